/work/main/build-release/bench/bench_message --port 38879 --http-port 50885 --ports 38879 --mode person --pairs 500 --window 16 --duration 15 --warmup 3 --threads 2 --version 4
