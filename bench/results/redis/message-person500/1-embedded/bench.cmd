/work/main/build-release/bench/bench_message --port 34895 --http-port 52383 --ports 34895 --mode person --pairs 500 --window 16 --duration 15 --warmup 3 --threads 2 --version 4
