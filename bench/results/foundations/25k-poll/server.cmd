/work/main/build-release/limaoim --mode test --addr 127.0.0.1 --port 6666 --max-conns 28189
