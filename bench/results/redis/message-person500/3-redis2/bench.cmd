/work/main/build-release/bench/bench_message --port 34909 --http-port 42161 --ports 34909,43245 --mode person --pairs 500 --window 16 --duration 15 --warmup 3 --threads 2 --version 4
