/work/main/build-release/bench/bench_message --port 51803 --http-port 49075 --ports 51803,43363,44351 --mode person --pairs 500 --window 16 --duration 15 --warmup 3 --threads 2 --version 4
