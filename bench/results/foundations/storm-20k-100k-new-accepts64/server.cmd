/work/main/build-release/limaoim --mode test --addr 127.0.0.1 --port 16668 --max-conns 135064
