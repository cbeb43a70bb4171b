/work/main/build-release/bench/bench_message --port 43417 --http-port 53801 --ports 43417,59057,59869 --mode person --pairs 500 --window 16 --duration 15 --warmup 3 --threads 2 --version 4
