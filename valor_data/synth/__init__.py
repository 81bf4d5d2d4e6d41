"""Synthetic, learnable audio-visual clips (ffmpeg lavfi) and a loopback server.

Every clip shows a coloured shape moving in one direction over a textured background
while one kind of sound plays, and its caption says so. Defective clips are made on
request and labelled with their defect. Nothing here touches the network except the
loopback server in ``valor_data.synth.server``. ``shards.py`` writes learnable shards in
the shard format (trainer tests, bench); ``labelled.py`` scores the filter against a corpus's
truth. A leaf: only tests, bench, the demo and ``valor-data synth`` import this package.
"""
