/work/main/build-bench/bench_connection -cids 1-25000 -hostname 127.0.0.1 -port 17700 -heartbeat 20s -timeout 270s -srcs 127.0.0.2-127.0.0.9
