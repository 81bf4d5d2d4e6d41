"""Render one synthetic clip with a single ffmpeg lavfi command."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from valor_data.media.ffmpeg import run_ffmpeg
from valor_data.synth.content import BACKGROUNDS, COLOURS, SHAPES, Content

VIDEO_CODECS = {
    "h264": ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"],
    "mpeg4": ["-c:v", "mpeg4", "-q:v", "4"],
    "vp9": ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "400k"],
}
AUDIO_CODECS = {
    "aac": ["-c:a", "aac", "-aac_coder", "fast", "-b:a", "96k"],
    "mp3": ["-c:a", "libmp3lame", "-b:a", "96k"],
    "opus": ["-c:a", "libopus", "-b:a", "64k"],
    "vorbis": ["-c:a", "libvorbis", "-q:a", "3"],
}
EXTENSIONS = {"mp4": "mp4", "matroska": "mkv", "webm": "webm"}


@dataclass(frozen=True)
class RenderSpec:
    """How to render: content, geometry, codecs and (for defects) what to break."""

    content: Content
    duration: float
    width: int = 320
    height: int = 240
    fps: float = 25.0
    vcodec: str = "h264"
    acodec: str = "aac"
    container: str = "mp4"
    sample_rate: int = 44100
    channels: int = 1
    seed: int = 0
    video: str = "content"        # content | black | frozen | uniform | none
    audio: str = "content"        # content | silent | clipped | none
    video_bitrate: str | None = None   # e.g. "8k" for a starved encode


def _still(source: str, spec: RenderSpec) -> str:
    """One frame of ``source`` repeated for the whole clip (costly filters run once)."""
    return f"{source},loop=loop=-1:size=1,fps={spec.fps},trim=duration={spec.duration}"


def _shape_tile(spec: RenderSpec) -> str:
    size = max(8, (spec.height // 5) // 2 * 2)
    alpha = SHAPES[spec.content.shape][0].format(c=(size - 1) / 2, r=size / 2)
    colour = COLOURS[spec.content.colour][0]
    return _still(f"color=c={colour}:s={size}x{size}:r={spec.fps}:d=1,format=rgba,"
                  f"geq=r='r(X,Y)':g='g(X,Y)':b='b(X,Y)':a='{alpha}'", spec)


def _motion(spec: RenderSpec) -> str:
    """overlay x/y expressions: constant speed in one direction, wrapping around."""
    v = spec.content.speed * spec.height / 240
    offset = spec.seed % 97
    centre_x, centre_y = "(W-w)/2", "(H-h)/2"
    return {
        "left": f"x='W-mod({v:.3f}*t+{offset},W+w)':y='{centre_y}'",
        "right": f"x='mod({v:.3f}*t+{offset},W+w)-w':y='{centre_y}'",
        "up": f"x='{centre_x}':y='H-mod({v:.3f}*t+{offset},H+h)'",
        "down": f"x='{centre_x}':y='mod({v:.3f}*t+{offset},H+h)-h'",
    }[spec.content.motion]


def _video_inputs(spec: RenderSpec) -> tuple[list[str], str]:
    """(ffmpeg input args, filter graph ending in [v])."""
    size = f"{spec.width}x{spec.height}"
    if spec.video in ("black", "uniform"):
        colour = "black" if spec.video == "black" else COLOURS[spec.content.colour][0]
        return ["-f", "lavfi", "-i", f"color=c={colour}:s={size}:r={spec.fps}:d={spec.duration}"], "[0:v]null[v]"
    c0, c1 = BACKGROUNDS[spec.content.background]
    background = _still(f"gradients=s={size}:r={spec.fps}:d=1:c0={c0}:c1={c1}:seed={spec.seed},"
                        "noise=alls=6,format=yuv420p", spec)
    graph = f"[0:v][1:v]overlay={_motion(spec)}:shortest=1"
    if spec.video == "frozen":
        graph += f",loop=loop=-1:size=1,trim=duration={spec.duration}"
    return ["-f", "lavfi", "-i", background, "-f", "lavfi", "-i", _shape_tile(spec)], graph + "[v]"


def _audio_source(spec: RenderSpec) -> str:
    rate, dur, p = spec.sample_rate, spec.duration, spec.content.pitch
    if spec.audio == "silent":
        return f"anullsrc=r={rate}:cl=mono,atrim=duration={dur}"
    if spec.audio == "clipped":
        return f"aevalsrc='clip(4*sin(2*PI*{440 * p:.2f}*t),-1,1)':s={rate}:d={dur}"
    amp = 0.3 + (spec.seed % 5) * 0.04
    noise = {"white_noise": "white", "pink_noise": "pink"}.get(spec.content.sound)
    if noise:
        return f"anoisesrc=c={noise}:a={amp:.2f}:r={rate}:d={dur}:seed={spec.seed}"
    tone = {
        "beep": f"sine=f={1760 * p:.1f}:r={rate}:d={dur},volume='{amp * 6:.2f}*lt(mod(t,0.5),0.2)':eval=frame",
        "hum": f"sine=f={110 * p:.2f}:r={rate}:d={dur},volume={amp * 6:.2f}",
        "siren": f"sine=f={700 * p:.1f}:r={rate}:d={dur},vibrato=f=0.5:d=1,volume={amp * 6:.2f}",
        "tick": f"sine=f=3000:r={rate}:d={dur},volume='{amp * 6:.2f}*exp(-40*mod(t,0.5))':eval=frame",
    }
    return tone[spec.content.sound]


def render(spec: RenderSpec, out: Path) -> Path:
    """Write the clip described by ``spec`` to ``out`` (extension chosen by the caller)."""
    args: list[str] = ["-y"]
    maps: list[str] = []
    graph = ""
    if spec.video != "none":
        inputs, graph = _video_inputs(spec)
        args += inputs
        maps += ["-map", "[v]"]
    if spec.audio != "none":
        audio_index = args.count("-i")
        args += ["-f", "lavfi", "-i", _audio_source(spec)]
        maps += ["-map", f"{audio_index}:a"]
    if graph:
        args += ["-filter_complex", graph]
    args += maps + ["-t", f"{spec.duration}", "-threads", "1"]
    if spec.video != "none":
        args += VIDEO_CODECS[spec.vcodec]
        if spec.video_bitrate:
            args += ["-b:v", spec.video_bitrate, "-maxrate", spec.video_bitrate, "-bufsize", spec.video_bitrate]
    if spec.audio != "none":
        args += AUDIO_CODECS[spec.acodec] + ["-ar", str(spec.sample_rate), "-ac", str(spec.channels)]
    if spec.container == "mp4":
        args += ["-movflags", "+faststart"]
    args += ["-map_metadata", "-1", "-fflags", "+bitexact", "-f", spec.container, str(out)]
    out.parent.mkdir(parents=True, exist_ok=True)
    run_ffmpeg(args, timeout=300)
    return out
