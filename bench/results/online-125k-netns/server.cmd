ip netns exec lmo-6666-srv /work/main/build-release/limaoim --mode test --addr 0.0.0.0 --port 6666 --max-conns 140689
