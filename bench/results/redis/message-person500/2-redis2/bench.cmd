/work/main/build-release/bench/bench_message --port 59285 --http-port 45495 --ports 59285,55125 --mode person --pairs 500 --window 16 --duration 15 --warmup 3 --threads 2 --version 4
