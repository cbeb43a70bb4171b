/work/main/build-release/bench_connection -cids 1-20000 -hostname 127.0.0.1 -port 17800 -heartbeat 20s -timeout 270s -srcs 127.0.0.2-127.0.0.9
