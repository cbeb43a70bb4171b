/work/main/build-release/bench/bench_message --port 43297 --http-port 54083 --ports 43297,39501,59275 --mode person --pairs 500 --window 16 --duration 15 --warmup 3 --threads 2 --version 4
