/work/main/build-release/bench/bench_message --port 57317 --http-port 50841 --ports 57317,36117 --mode person --pairs 500 --window 16 --duration 15 --warmup 3 --threads 2 --version 4
