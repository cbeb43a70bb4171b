/work/wt-after/build-release/limaoim --mode test --addr 127.0.0.1 --port 17700 --max-conns 28189 --http-addr  --data-dir /work/main/bench/results/issue21/25k-idle-after/data --ws-addr 
