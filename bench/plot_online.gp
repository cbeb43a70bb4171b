# Draws bench/online.sh's samples.csv: clients online, memory, server CPU.
#
#   gnuplot -e "samples='samples.csv'; output='online.png'; clients=125000" bench/plot_online.gp
#
# Columns: t_s,online,connections,server_rss_kib,server_cpu_pct,tcp_inuse,
# tcp_mem_pages,slab_kib,bytes_in_per_s,bytes_out_per_s,load_rss_kib,host_cpu_pct

if (!exists("samples")) samples = 'samples.csv'
if (!exists("output")) output = 'online.png'
if (!exists("clients")) clients = 0

set terminal pngcairo size 1200,1000 font ',11'
set output output
set datafile separator ','
set key autotitle columnhead
set grid
# Keys sit in headroom above the data rather than on it.
set key top left horizontal maxrows 2 opaque box
headroom = 1.45

# Empty fields (the first row's rates) are missing values, not zeros.
set datafile missing ''

# stats filters by any fixed axis range, so every maximum is taken before
# the first range is set.
max(a, b) = a > b ? a : b
stats samples using 1 nooutput
t_min = STATS_min
t_max = STATS_max
stats samples using (max($2, $3)) nooutput
clients_max = max(STATS_max, 1)
stats samples using (max(max($4, $8), max($11, $7 * 4)) / 1024) nooutput
memory_max_mib = max(STATS_max, 1)
stats samples using (max($5, $12)) nooutput
cpu_max = max(STATS_max, 1)
stats samples using (max($9, $10) / 1024) nooutput
traffic_max_kib = max(STATS_max, 1)
set xrange [t_min:t_max]

set multiplot layout 3,1 title sprintf('limaoim: %d clients held online over loopback (t = 0: load processes start)', clients)
set lmargin 12
set rmargin 12

set title 'clients'
set ylabel 'clients'
set format y '%.0f'
set yrange [0:clients_max * headroom]
plot samples using 1:2 with lines lw 2 lc rgb '#1f77b4' title 'online (authenticated)', \
     ''      using 1:3 with lines lw 1 dt 2 lc rgb '#ff7f0e' title 'connections', \
     ''      using 1:($6 / 2) with lines lw 1 dt 3 lc rgb '#7f7f7f' title 'TCP sockets in use / 2'

set title 'memory'
set ylabel 'MiB'
set format y '%.0f'
set yrange [0:memory_max_mib * headroom]
plot samples using 1:($4 / 1024) with lines lw 2 lc rgb '#d62728' title 'server RSS', \
     ''      using 1:($7 * 4 / 1024) with lines lw 1 lc rgb '#2ca02c' title 'kernel TCP buffers (sockstat mem)', \
     ''      using 1:($8 / 1024) with lines lw 1 dt 2 lc rgb '#9467bd' title 'kernel Slab (whole host)', \
     ''      using 1:($11 / 1024) with lines lw 1 dt 3 lc rgb '#8c564b' title 'load generators RSS'

set title 'server CPU and traffic'
set xlabel 't (s)'
set ylabel 'CPU % of one core'
set y2label 'server KiB/s'
set ytics nomirror
set y2tics
set yrange [0:cpu_max * headroom]
set y2range [0:traffic_max_kib * headroom]
plot samples using 1:5 with lines lw 2 lc rgb '#17becf' title 'server CPU %', \
     ''      using 1:12 with lines lw 1 lc rgb '#7f7f7f' title 'whole host CPU %', \
     ''      using 1:($9 / 1024) axes x1y2 with lines lw 1 dt 2 lc rgb '#bcbd22' title 'RX KiB/s (right)', \
     ''      using 1:($10 / 1024) axes x1y2 with lines lw 1 dt 3 lc rgb '#e377c2' title 'TX KiB/s (right)'

unset multiplot
