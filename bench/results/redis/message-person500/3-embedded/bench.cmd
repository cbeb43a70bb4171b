/work/main/build-release/bench/bench_message --port 52853 --http-port 48475 --ports 52853 --mode person --pairs 500 --window 16 --duration 15 --warmup 3 --threads 2 --version 4
