/tmp/wkbench/mix-old/limaoim --mode test --addr 127.0.0.1 --port 17700 --max-conns 16939 --http-addr  --data-dir /work/wt-wkbench/bench/results/wkproto/15k-idle-b53c0f0-v4-3/data --ws-addr 
