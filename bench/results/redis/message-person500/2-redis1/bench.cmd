/work/main/build-release/bench/bench_message --port 56071 --http-port 34015 --ports 56071 --mode person --pairs 500 --window 16 --duration 15 --warmup 3 --threads 2 --version 4
