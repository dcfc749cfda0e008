# bench/plot.gp: the chart of bench/run (which calls it when gnuplot is
# installed):
#   gnuplot -e "datafile='plot.dat'; outfile='x.png'; ntargets=4; charttitle='...'" bench/plot.gp
# datafile holds two blocks separated by two blank lines: index 0 the random
# 4k workloads in kIOPS, index 1 the sequential 1M workloads in MB/s. Each
# block starts with a header line ("workload", then for each target its
# label, "min", "max") and has one line per workload: its label, then for
# each target the median, min and max of the repeats.
# Two panels of grouped bars, one group per workload, one bar per target
# (median, its value above), the error bar from the slowest to the fastest
# run.

if (!exists("datafile")) datafile = "plot.dat"
if (!exists("outfile")) outfile = "bench.png"
if (!exists("ntargets")) ntargets = 4
if (!exists("charttitle")) charttitle = "NDFS bench/run"

set terminal pngcairo size 1500,650 enhanced font "sans,10"
set output outfile

# raw file, local vdisk, nbdkit+nbdfuse, remote vdisk
set linetype 1 lc rgb "#8c8c8c"
set linetype 2 lc rgb "#1f77b4"
set linetype 3 lc rgb "#ff7f0e"
set linetype 4 lc rgb "#2ca02c"

set style data histograms
set style histogram errorbars gap 1.5 lw 1.2
set style fill solid 0.85 border rgb "#404040"
set boxwidth 0.95
set errorbars lc rgb "black"
set grid ytics lc rgb "#d0d0d0"
set yrange [0:*]
set xtics nomirror scale 0
set ytics nomirror
set border 3
set key top left horizontal samplen 2 spacing 1.1 box lc rgb "#c0c0c0"
set bmargin 3
# The first line of each block is its header, for every plot (the labels too).
set key autotitle columnheader
# Headroom above the tallest bar for the key and the value labels.
set offsets 0, 0, graph 0.14, 0
gap = 1.5   # as in the histogram style below
# x of target i's bar in the cluster of row r
barx(r, i) = r + (i - (ntargets - 1) / 2.0) / (ntargets + gap)

set multiplot title charttitle font ",12"

set origin 0, 0
set size 0.62, 0.95
set title "4k random (psync QD1, libaio QD32)"
set ylabel "kIOPS (median)"
stats datafile index 0 using 2 nooutput
set xrange [-0.6:STATS_records - 0.4]
plot for [i = 0:ntargets - 1] datafile index 0 \
        using (column(2 + 3 * i)):(column(3 + 3 * i)):(column(4 + 3 * i)):xtic(1) \
        title columnheader(2 + 3 * i) lt i + 1, \
    for [i = 0:ntargets - 1] datafile index 0 \
        using (barx($0, i)):(column(4 + 3 * i)):(sprintf("%.1f", column(2 + 3 * i))) \
        with labels offset 0, 0.6 font ",8" notitle

set origin 0.62, 0
set size 0.38, 0.95
set title "1M sequential (libaio QD8)"
set ylabel "MB/s (median)"
unset key
stats datafile index 1 using 2 nooutput
set xrange [-0.6:STATS_records - 0.4]
plot for [i = 0:ntargets - 1] datafile index 1 \
        using (column(2 + 3 * i)):(column(3 + 3 * i)):(column(4 + 3 * i)):xtic(1) \
        title columnheader(2 + 3 * i) lt i + 1, \
    for [i = 0:ntargets - 1] datafile index 1 \
        using (barx($0, i)):(column(4 + 3 * i)):(sprintf("%.0f", column(2 + 3 * i))) \
        with labels offset 0, 0.6 font ",8" notitle

unset multiplot
