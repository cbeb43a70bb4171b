/work/main/build-release/bench/bench_message --port 39359 --http-port 48101 --ports 39359 --mode person --pairs 500 --window 16 --duration 15 --warmup 3 --threads 2 --version 4
