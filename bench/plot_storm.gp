# Draws bench/online.sh --storm's storm.csv: connections per second, clients,
# latencies and CPU over time, with the storm's start marked.
#
#   gnuplot -e "storm='storm.csv'; output='storm.png'; rate=8000; established=5000" bench/plot_storm.gp
#
# Per-second rates are drawn as histeps centred on t - 0.5: row t covers the
# second (t-1, t].
# Columns: 1 t_s, 2 phase, 3 offered_per_s, 4 retries_per_s,
# 5 tcp_connected_per_s, 6 handshakes_per_s, 7 online, 8 established_online,
# 9 in_flight, 10 reset_per_s, 11 refused_per_s, 12 timeouts_per_s,
# 13 closed_after_connack_per_s, 14 dropped_per_s, 15 established_lost,
# 16 connack_p50_ms, 17 connack_p99_ms, 18 login_p99_ms, 19 pong_p99_ms,
# 20 pongs_missing_per_s (heartbeats that found the previous PING unanswered:
# its PONG later than the heartbeat interval), 21 server_accepted_per_s, 22 server_auth_ok_per_s,
# 23 server_closed_per_s, 24 server_pending_handshakes, 25 accept_queue,
# 26 listen_overflows_per_s, 27 listen_drops_per_s, 28 server_cpu_pct,
# 29 host_cpu_pct

if (!exists("storm")) storm = 'storm.csv'
if (!exists("output")) output = 'storm.png'
if (!exists("rate")) rate = 0
if (!exists("established")) established = 0

set terminal pngcairo size 1200,1300 font ',11'
set output output
set datafile separator ','
# Empty fields are missing: gap(n) turns one into NaN, which breaks a line
# instead of joining its neighbours.
gap(n) = valid(n) ? column(n) : NaN
set grid
set key top left horizontal maxrows 2 opaque box
headroom = 1.45
max(a, b) = a > b ? a : b

# Every maximum before the first fixed range (stats obeys set ranges).
stats storm using 1 nooutput
t_min = STATS_min
t_max = STATS_max
stats storm using ($2 >= 1 ? $1 : 1/0) nooutput
storm_start = STATS_records > 0 ? STATS_min - 1 : t_min
stats storm using (max(max($3, $5), max($6, $21))) nooutput
rate_max = max(max(STATS_max, rate), 1)
stats storm using (max(max($7, $9), max($24, $25))) nooutput
clients_max = max(STATS_max, 1)
stats storm using (max($10 + $11, $12)) nooutput
failures_max = max(STATS_max, 1)
stats storm using (max($15, $20)) nooutput
lost_max = max(STATS_max, 1)
stats storm using (max($28, $29)) nooutput
cpu_max = max(STATS_max, 1)
set xrange [t_min - 1:t_max]
set arrow 1 from storm_start, graph 0 to storm_start, graph 1 nohead lw 1 dt 2 lc rgb '#555555'

set multiplot layout 4,1 title sprintf('limaoim login storm: %d established clients, then a storm offered at %d/s (dashed line: storm start; t = 0: load processes start)', established, rate)
set lmargin 12
set rmargin 12

set title 'connections per second'
set ylabel 'per second'
set format y '%.0f'
set yrange [0:rate_max * headroom]
set y2label 'failures per second'
set y2tics
set ytics nomirror
set y2range [0:failures_max * headroom]
plot storm using ($1 - 0.5):3 with histeps lw 1 lc rgb '#7f7f7f' title 'offered (connect() calls)', \
     ''    using ($1 - 0.5):5 with histeps lw 1 dt 2 lc rgb '#ff7f0e' title 'TCP connects completed', \
     ''    using ($1 - 0.5):21 with histeps lw 1 dt 3 lc rgb '#9467bd' title 'accepted by the server', \
     ''    using ($1 - 0.5):6 with histeps lw 2 lc rgb '#1f77b4' title 'handshakes completed (CONNACKs)', \
     ''    using 1:($10 + $11) axes x1y2 with fsteps lw 2 lc rgb '#d62728' title 'reset/refused before CONNACK (right)', \
     ''    using ($1 - 0.5):12 axes x1y2 with histeps lw 1 lc rgb '#8c564b' title 'timed out (right)'

set title 'clients'
set ylabel 'clients'
set y2label 'lost; PONGs late per s'
set key maxcols 3
set yrange [0:clients_max * 1.7]
set y2range [0:lost_max * headroom]
plot storm using 1:7 with lines lw 2 lc rgb '#1f77b4' title 'online', \
     ''    using 1:8 with lines lw 1 lc rgb '#2ca02c' title 'established online', \
     ''    using 1:9 with lines lw 1 dt 2 lc rgb '#ff7f0e' title 'in flight (client)', \
     ''    using 1:25 with lines lw 1 dt 3 lc rgb '#9467bd' title 'accept queue (server)', \
     ''    using 1:24 with lines lw 1 dt 4 lc rgb '#8c564b' title 'accepted, no CONNACK (server)', \
     ''    using ($1 - 0.5):15 axes x1y2 with histeps lw 2 lc rgb '#d62728' title 'established lost, total (right)', \
     ''    using ($1 - 0.5):20 axes x1y2 with histeps lw 1 lc rgb '#e377c2' title 'PONGs late, per s (right)'

# A second without a sample (an empty field) breaks the line.
set key maxcols auto
set title 'latency (per second, log scale)'
set ylabel 'ms'
unset y2label
unset y2tics
set ytics mirror
set logscale y
set yrange [*:*]
set format y '%g'
plot storm using 1:(gap(16)) with linespoints pt 7 ps 0.4 lw 1 lc rgb '#1f77b4' title 'CONNECT->CONNACK p50', \
     ''    using 1:(gap(17)) with linespoints pt 7 ps 0.4 lw 2 lc rgb '#1f77b4' title 'CONNECT->CONNACK p99', \
     ''    using 1:(gap(18)) with linespoints pt 7 ps 0.4 lw 1 dt 2 lc rgb '#ff7f0e' title 'connect()->CONNACK p99', \
     ''    using 1:(gap(19)) with linespoints pt 7 ps 0.4 lw 2 lc rgb '#2ca02c' title 'PING->PONG p99'
unset logscale y

set title 'CPU'
set xlabel 't (s)'
set ylabel 'CPU % of one core'
set format y '%.0f'
set yrange [0:cpu_max * headroom]
plot storm using 1:28 with lines lw 2 lc rgb '#17becf' title 'server CPU %', \
     ''    using 1:29 with lines lw 1 lc rgb '#7f7f7f' title 'whole host CPU %'

unset multiplot
