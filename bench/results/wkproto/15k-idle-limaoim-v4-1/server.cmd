/work/wt-wkbench/build-release/limaoim --mode test --addr 127.0.0.1 --port 17700 --max-conns 16939 --http-addr  --data-dir /work/wt-wkbench/bench/results/wkproto/15k-idle-limaoim-v4-1/data --ws-addr 
