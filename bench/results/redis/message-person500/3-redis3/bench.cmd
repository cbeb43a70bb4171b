/work/main/build-release/bench/bench_message --port 47487 --http-port 33579 --ports 47487,58343,35107 --mode person --pairs 500 --window 16 --duration 15 --warmup 3 --threads 2 --version 4
