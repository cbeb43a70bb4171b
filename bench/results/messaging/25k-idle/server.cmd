/work/main/build-release/limaoim --mode test --addr 127.0.0.1 --port 17600 --max-conns 28189 --http-addr  --data-dir /work/main/bench/results/messaging/25k-idle/data
