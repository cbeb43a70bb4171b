/work/main/build-release/bench/bench_message --port 35017 --http-port 55583 --ports 35017,53579 --mode person --pairs 500 --window 16 --duration 15 --warmup 3 --threads 2 --version 4
