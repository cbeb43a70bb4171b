/work/main/build-release/bench/bench_message --port 43607 --http-port 42421 --ports 43607 --mode person --pairs 500 --window 16 --duration 15 --warmup 3 --threads 2 --version 4
