"""What a synthetic clip shows and sounds like, and the caption that says so."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

# name -> (ffmpeg colour, Chinese name)
COLOURS = {
    "red": ("0xE02828", "红色"),
    "green": ("0x28C040", "绿色"),
    "blue": ("0x3050F0", "蓝色"),
    "yellow": ("0xF0D020", "黄色"),
}
# name -> (alpha expression over a SxS tile with X, Y and S substituted, Chinese name)
SHAPES = {
    "circle": ("255*lte(hypot(X-{c},Y-{c}),{r})", "圆形"),
    "square": ("255", "方块"),
    "triangle": ("255*gte(Y,2*abs(X-{c}))", "三角形"),
}
# direction -> Chinese phrase
MOTIONS = {"left": "向左移动", "right": "向右移动", "up": "向上移动", "down": "向下移动"}
# name -> (English phrase, Chinese phrase, AudioSet MID, AudioSet name)
SOUNDS = {
    "beep": ("a high beep repeats", "高音哔哔声重复响起", "/m/02fs_r", "Beep, bleep"),
    "hum": ("a low hum drones", "低沉的嗡嗡声持续", "/m/07rcgpl", "Hum"),
    "siren": ("a siren wails", "警笛声响起", "/m/03kmc9", "Siren"),
    "tick": ("a clock ticks", "时钟滴答作响", "/m/07qjznt", "Tick"),
    "white_noise": ("white noise hisses", "白噪声嘶嘶作响", "/m/0chx_", "White noise"),
    "pink_noise": ("pink noise rumbles", "粉红噪声隆隆作响", "/m/0cj0r", "Pink noise"),
}
# gradient colour pairs for the background (a nuisance variable, never in captions)
BACKGROUNDS = [("0x101828", "0x506080"), ("0x282810", "0x707850"), ("0x102010", "0x587058"),
               ("0x281010", "0x785050"), ("0x202020", "0x686868")]


@dataclass(frozen=True)
class Content:
    """The learnable content of one clip; the caption is a function of it."""

    shape: str
    colour: str
    motion: str
    sound: str
    background: int = 0      # nuisance: which gradient pair, not mentioned in captions
    speed: float = 40.0      # pixels per second
    pitch: float = 1.0       # nuisance: small pitch shift of tonal sounds

    def caption(self, lang: str = "en", variant: int = 0) -> str:
        """The caption; ``variant=1`` is a paraphrase (a second reference caption)."""
        colour, shape, sound = COLOURS[self.colour][1], SHAPES[self.shape][1], SOUNDS[self.sound]
        if lang == "zh":
            if variant:
                return f"画面中{colour}{shape}{MOTIONS[self.motion]}，可以听到{sound[1]}"
            return f"一个{colour}的{shape}{MOTIONS[self.motion]}，同时{sound[1]}"
        if variant:
            return f"{sound[0]} as a {self.colour} {self.shape} travels {self.motion}"
        return f"a {self.colour} {self.shape} moves {self.motion} while {sound[0]}"

    @property
    def label(self) -> tuple[str, str]:
        """The AudioSet (MID, name) of the sound."""
        return SOUNDS[self.sound][2], SOUNDS[self.sound][3]

    def as_dict(self) -> dict:
        return asdict(self)


def random_content(rng: random.Random, linked_sound: bool = False) -> Content:
    """Random content; ``linked_sound``: the sound follows the shape and colour (``linked``)."""
    content = Content(shape=rng.choice(sorted(SHAPES)), colour=rng.choice(sorted(COLOURS)),
                      motion=rng.choice(sorted(MOTIONS)), sound=rng.choice(sorted(SOUNDS)),
                      background=rng.randrange(len(BACKGROUNDS)), speed=rng.uniform(30, 60),
                      pitch=rng.uniform(0.9, 1.1))
    return Content(**{**content.as_dict(), "sound": linked(content)}) if linked_sound else content


def linked(content: Content) -> str:
    """One sound per shape and colour (12 pairs onto 6 sounds): video and audio correlate as they do
    in real clips, so a clip's audio can be told from its frames."""
    pair = sorted(SHAPES).index(content.shape) * len(COLOURS) + sorted(COLOURS).index(content.colour)
    return sorted(SOUNDS)[pair % len(SOUNDS)]
