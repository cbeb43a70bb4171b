/work/main/build-bench/limaoim --mode test --addr 127.0.0.1 --port 17700 --ws-addr 127.0.0.1:17701 --http-addr  --max-conns 28189 --data-dir /tmp/limaoim-ws-idle-gstJFu --instance ws-idle-25112-2-ws
