"""The VOC objects of the PASCAL-Context twin, built from ray-castable shapes.

A ``Figure`` is one object instance: its VOC class, its PASCAL-Context label, and its pieces,
each a shape with a colour and a PASCAL-Part part name. People are built limb by limb (head,
hair, neck, torso, upper and lower arms, hands, upper and lower legs, feet), so the renderer can
tell every pixel's body part; animals and vehicles have parts too (torso, legs, wheels), which
the parts task must ignore, as it ignores them in real PASCAL-Part files.

Builders take ``(rng, x, z, yaw)``: the figure stands on the ground at (x, 0, z), turned by
``yaw`` about the vertical; in its own frame it faces +z, and its left side is +x.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .raycast import Box, Cylinder, Sphere, rot_y

Colour = tuple[float, float, float]


@dataclass(frozen=True)
class Piece:
    """A shape of a figure with its colour and part name ("" = not part-annotated)."""

    shape: object
    colour: Colour
    part: str = ""
    pattern: str = ""


@dataclass
class Figure:
    """One object instance of a VOC class."""

    voc: int
    name: str
    context: int
    pieces: list[Piece] = field(default_factory=list)
    salient: bool = False
    #: Whether its part masks go into the annotation file (distant people have none).
    annotated: bool = True


class Frame:
    """Places local-frame offsets of a figure at (x, z) turned by ``yaw``."""

    def __init__(self, x: float, z: float, yaw: float) -> None:
        self.rot, self.origin, self.yaw = rot_y(yaw), np.array([x, 0.0, z]), yaw

    def at(self, offset: tuple[float, float, float]) -> np.ndarray:
        return self.rot @ np.asarray(offset, dtype=float) + self.origin

    def box(self, offset: tuple, half: tuple) -> Box:
        return Box(tuple(self.at(offset)), tuple(half), self.yaw)

    def post(self, dx: float, dz: float, radius: float, bottom: float, top: float) -> Cylinder:
        x, _, z = self.at((dx, 0.0, dz))
        return Cylinder(float(x), float(z), radius, bottom, top)

    def ball(self, offset: tuple, radius: float) -> Sphere:
        return Sphere(tuple(self.at(offset)), radius)


def _tint(rng: np.random.Generator, colours: list[Colour]) -> Colour:
    base = np.asarray(colours[rng.integers(len(colours))]) * rng.uniform(0.85, 1.15)
    return tuple(np.clip(base, 0.0, 1.0))


SKIN = [(0.95, 0.76, 0.62), (0.80, 0.58, 0.42), (0.55, 0.37, 0.25), (0.38, 0.25, 0.17)]
CLOTH = [(0.8, 0.1, 0.1), (0.1, 0.3, 0.8), (0.1, 0.6, 0.2), (0.9, 0.8, 0.1), (0.9, 0.9, 0.9),
         (0.5, 0.1, 0.6), (1.0, 0.5, 0.0), (0.1, 0.7, 0.7)]  # fmt: skip
TROUSERS = [(0.15, 0.2, 0.45), (0.1, 0.1, 0.1), (0.45, 0.35, 0.25), (0.35, 0.35, 0.38)]
HAIR = [(0.1, 0.07, 0.05), (0.35, 0.2, 0.1), (0.85, 0.7, 0.35), (0.5, 0.5, 0.5)]
PAINT = [(0.8, 0.05, 0.05), (0.9, 0.9, 0.92), (0.1, 0.1, 0.12), (0.2, 0.35, 0.75), (0.6, 0.6, 0.6)]


# --------------------------------------------------------------------------- people
def person(rng: np.random.Generator, x: float, z: float, yaw: float) -> Figure:
    """A standing person, maybe mid-stride and waving; left limbs on its +x side."""
    h = rng.uniform(1.55, 1.9) if rng.random() < 0.85 else rng.uniform(1.0, 1.3)
    f = Frame(x, z, yaw)
    skin, shirt, legs = _tint(rng, SKIN), _tint(rng, CLOTH), _tint(rng, TROUSERS)
    hair, shoes = _tint(rng, HAIR), (0.12, 0.1, 0.1)
    stride = rng.uniform(-0.06, 0.06) * h
    raised = rng.choice(["", "l", "r"], p=[0.7, 0.15, 0.15])
    pieces = [
        Piece(f.ball((0, 0.93 * h, 0), 0.065 * h), skin, "head"),
        Piece(f.ball((0, 0.945 * h, -0.012 * h), 0.066 * h), hair, "hair"),
        Piece(f.post(0, 0, 0.03 * h, 0.8 * h, 0.87 * h), skin, "neck"),
        Piece(f.box((0, 0.66 * h, 0), (0.115 * h, 0.16 * h, 0.065 * h)), shirt, "torso"),
    ]
    for side, sx in (("l", 1.0), ("r", -1.0)):
        step = stride * sx
        pieces += [
            Piece(
                f.box((0.055 * h * sx, 0.02 * h, step + 0.03 * h), (0.03 * h, 0.02 * h, 0.06 * h)),
                shoes,
                f"{side}foot",
            ),  # fmt: skip
            Piece(f.post(0.055 * h * sx, step, 0.032 * h, 0.04 * h, 0.28 * h), legs, f"{side}lleg"),
            Piece(
                f.post(0.055 * h * sx, step / 2, 0.045 * h, 0.28 * h, 0.5 * h), legs, f"{side}uleg"
            ),  # fmt: skip
        ]
        ax = 0.15 * h * sx
        if raised == side:
            arm = [(0.81, 1.02, 0.032, "uarm", shirt), (1.02, 1.17, 0.027, "larm", skin)]
            hand_y = 1.2
        else:
            arm = [(0.57, 0.81, 0.032, "uarm", shirt), (0.42, 0.57, 0.027, "larm", skin)]
            hand_y = 0.39
        for bottom, top, radius, name, colour in arm:
            limb = f.post(ax, 0, radius * h, bottom * h, top * h)
            pieces.append(Piece(limb, colour, side + name))
        pieces.append(Piece(f.ball((ax, hand_y * h, 0), 0.032 * h), skin, f"{side}hand"))
    return Figure(15, "person", 284, pieces)


# --------------------------------------------------------------------------- animals
#: species -> (VOC index, context id, body half sizes (w, h, l), leg length, colours, pattern)
SPECIES: dict[str, tuple[int, int, tuple[float, float, float], float, list[Colour], str]] = {
    "dog": (12, 113, (0.11, 0.12, 0.3), 0.3,
            [(0.55, 0.35, 0.15), (0.1, 0.08, 0.06), (0.9, 0.85, 0.75), (0.8, 0.6, 0.3)], ""),
    "cat": (8, 65, (0.07, 0.08, 0.2), 0.18,
            [(0.5, 0.5, 0.52), (0.95, 0.55, 0.2), (0.12, 0.12, 0.12)], "stripes"),
    "horse": (13, 207, (0.25, 0.3, 0.9), 0.9,
              [(0.45, 0.25, 0.1), (0.12, 0.08, 0.06), (0.9, 0.88, 0.85)], ""),
    "cow": (10, 98, (0.33, 0.38, 0.9), 0.7, [(0.95, 0.95, 0.95)], "patches"),
    "sheep": (17, 347, (0.25, 0.28, 0.5), 0.35, [(0.92, 0.9, 0.82)], "wool"),
}  # fmt: skip


def animal(species: str) -> Callable[[np.random.Generator, float, float, float], Figure]:
    """A builder of four-legged animals of ``species`` (see ``SPECIES``)."""
    voc, context, (w, bh, length), leg, colours, pattern = SPECIES[species]

    def build(rng: np.random.Generator, x: float, z: float, yaw: float) -> Figure:
        s = rng.uniform(0.85, 1.15)
        f, coat = Frame(x, z, yaw), _tint(rng, colours)
        top = (leg + 2 * bh) * s
        head_colour = (0.15, 0.12, 0.1) if species == "sheep" else coat
        pieces = [
            Piece(
                f.box((0, (leg + bh) * s, 0), (w * s, bh * s, length * s)), coat, "torso", pattern
            ),  # fmt: skip
            Piece(
                f.box((0, top, (length + 0.05) * s), (0.4 * w * s, 0.2 * top, 0.15 * top)),
                coat,
                "neck",
            ),  # fmt: skip
            Piece(
                f.box((0, top * 1.15, (length + 0.15) * s), (0.7 * w * s, 0.12 * top, 0.16 * top)),
                head_colour,
                "head",
            ),  # fmt: skip
            Piece(
                f.box((0, top * 0.8, -(length + 0.08) * s), (0.03 * s, 0.04, 0.1 * s)), coat, "tail"
            ),  # fmt: skip
        ]
        for name, lx, lz in (("lf", 1, 1), ("rf", -1, 1), ("lb", 1, -1), ("rb", -1, -1)):
            offset = (0.7 * w * s * lx, leg * s / 2, 0.8 * length * s * lz)
            half = (0.25 * w * s, leg * s / 2, 0.25 * w * s)
            pieces.append(Piece(f.box(offset, half), head_colour, f"{name}leg"))
        return Figure(voc, species, context, pieces)

    return build


# --------------------------------------------------------------------------- vehicles
def car(rng: np.random.Generator, x: float, z: float, yaw: float) -> Figure:
    f, paint, glass, tyre = Frame(x, z, yaw), _tint(rng, PAINT), (0.2, 0.3, 0.4), (0.05,) * 3
    pieces = [
        Piece(f.box((0, 0.62, 0), (0.9, 0.32, 2.1)), paint),
        Piece(f.box((0, 1.2, -0.2), (0.8, 0.28, 1.1)), glass, "window_1"),
    ]
    for i, (wx, wz) in enumerate(((1, 1), (-1, 1), (1, -1), (-1, -1))):
        pieces.append(Piece(f.box((0.85 * wx, 0.32, 1.35 * wz), (0.12, 0.32, 0.32)), tyre,
                            f"wheel_{i + 1}"))  # fmt: skip
    return Figure(7, "car", 59, pieces)


def bus(rng: np.random.Generator, x: float, z: float, yaw: float) -> Figure:
    f, paint = Frame(x, z, yaw), _tint(rng, [(0.9, 0.7, 0.1), (0.8, 0.1, 0.1), (0.2, 0.5, 0.8)])
    pieces = [
        Piece(f.box((0, 1.75, 0), (1.25, 1.4, 5.5)), paint),
        Piece(f.box((0, 2.25, 0), (1.27, 0.45, 5.2)), (0.15, 0.22, 0.3), "window_1"),
    ]
    return Figure(6, "bus", 45, pieces)


def bird(rng: np.random.Generator, x: float, z: float, yaw: float) -> Figure:
    lift = rng.uniform(2.0, 5.0) if rng.random() < 0.5 else 0.0
    f, colour = Frame(x, z, yaw), _tint(rng, [(0.3, 0.3, 0.35), (0.7, 0.5, 0.2), (0.9, 0.9, 0.9)])
    pieces = [
        Piece(f.ball((0, lift + 0.15, 0), 0.12), colour, "torso"),
        Piece(f.ball((0, lift + 0.28, 0.1), 0.065), colour, "head"),
        Piece(f.box((0, lift + 0.2, -0.15), (0.04, 0.02, 0.08)), colour, "tail"),
    ]
    return Figure(3, "bird", 25, pieces)


def aeroplane(rng: np.random.Generator, x: float, z: float, yaw: float) -> Figure:
    """An airliner in the sky: ``z`` places it far away and high up."""
    f, alt = Frame(x, z, yaw), rng.uniform(0.25, 0.45) * -z
    white, tail = (0.92, 0.92, 0.95), _tint(rng, PAINT)
    pieces = [
        Piece(f.box((0, alt, 0), (14.0, 1.6, 1.7)), white, "body"),
        Piece(f.box((0, alt - 0.5, 2.0), (0.3, 0.3, 15.0)), white, "lwing"),
        Piece(f.box((-12.5, alt + 2.5, 0), (1.2, 2.6, 0.2)), tail, "tail"),
    ]
    return Figure(1, "aeroplane", 2, pieces)


# --------------------------------------------------------------------------- indoor things
def chair(rng: np.random.Generator, x: float, z: float, yaw: float) -> Figure:
    f, wood = Frame(x, z, yaw), _tint(rng, [(0.5, 0.3, 0.15), (0.2, 0.2, 0.22), (0.8, 0.8, 0.75)])
    pieces = [Piece(f.box((0, 0.45, 0), (0.22, 0.03, 0.22)), wood),
              Piece(f.box((0, 0.72, -0.2), (0.22, 0.25, 0.02)), wood)]  # fmt: skip
    for lx, lz in ((1, 1), (-1, 1), (1, -1), (-1, -1)):
        pieces.append(Piece(f.box((0.19 * lx, 0.21, 0.19 * lz), (0.02, 0.21, 0.02)), wood))
    return Figure(9, "chair", 72, pieces)


def sofa(rng: np.random.Generator, x: float, z: float, yaw: float) -> Figure:
    f, cloth = Frame(x, z, yaw), _tint(rng, [(0.5, 0.15, 0.2), (0.25, 0.3, 0.5), (0.6, 0.55, 0.4)])
    pieces = [Piece(f.box((0, 0.22, 0), (0.95, 0.22, 0.45)), cloth),
              Piece(f.box((0, 0.5, -0.37), (0.95, 0.42, 0.1)), cloth)]  # fmt: skip
    pieces += [Piece(f.box((0.85 * sx, 0.32, 0), (0.1, 0.32, 0.45)), cloth) for sx in (-1, 1)]
    return Figure(18, "sofa", 368, pieces)


def table(rng: np.random.Generator, x: float, z: float, yaw: float) -> Figure:
    f, wood = Frame(x, z, yaw), _tint(rng, [(0.6, 0.4, 0.2), (0.85, 0.8, 0.7)])
    pieces = [Piece(f.box((0, 0.74, 0), (0.6, 0.03, 0.4)), wood)]
    for lx, lz in ((1, 1), (-1, 1), (1, -1), (-1, -1)):
        pieces.append(Piece(f.box((0.55 * lx, 0.36, 0.35 * lz), (0.03, 0.36, 0.03)), wood))
    return Figure(11, "diningtable", 397, pieces)


def tvmonitor(rng: np.random.Generator, x: float, z: float, yaw: float) -> Figure:
    f, screen = Frame(x, z, yaw), _tint(rng, [(0.3, 0.5, 0.9), (0.9, 0.6, 0.3), (0.4, 0.8, 0.5)])
    pieces = [
        Piece(f.box((0, 0.35, 0), (0.05, 0.35, 0.05)), (0.1, 0.1, 0.1)),
        Piece(f.box((0, 0.95, 0), (0.55, 0.33, 0.04)), (0.08, 0.08, 0.08)),
        Piece(f.box((0, 0.95, 0.02), (0.5, 0.28, 0.03)), screen, "screen"),
    ]
    return Figure(20, "tvmonitor", 427, pieces)


def pottedplant(rng: np.random.Generator, x: float, z: float, yaw: float) -> Figure:
    s = rng.uniform(0.7, 1.3)
    pieces = [
        Piece(Cylinder(x, z, 0.18 * s, 0.0, 0.35 * s), (0.7, 0.35, 0.2), "pot"),
        Piece(Sphere((x, 0.65 * s, z), 0.35 * s), _tint(rng, [(0.15, 0.5, 0.15)]), "plant"),
    ]
    return Figure(16, "pottedplant", 308, pieces)


def bottle(rng: np.random.Generator, x: float, z: float, yaw: float) -> Figure:
    colour = _tint(rng, [(0.1, 0.5, 0.2), (0.5, 0.3, 0.1), (0.7, 0.85, 0.9)])
    pieces = [
        Piece(Cylinder(x, z, 0.08, 0.0, 0.45), colour, "body"),
        Piece(Cylinder(x, z, 0.03, 0.45, 0.62), colour, "cap"),
    ]
    return Figure(5, "bottle", 34, pieces)


Builder = Callable[[np.random.Generator, float, float, float], Figure]

#: name -> (builder, footprint radius in metres).
BUILDERS: dict[str, tuple[Builder, float]] = {
    "person": (person, 0.35),
    **{name: (animal(name), SPECIES[name][2][2] + 0.2) for name in SPECIES},
    "car": (car, 2.3),
    "bus": (bus, 5.7),
    "bird": (bird, 0.3),
    "aeroplane": (aeroplane, 15.0),
    "chair": (chair, 0.35),
    "sofa": (sofa, 1.0),
    "diningtable": (table, 0.75),
    "tvmonitor": (tvmonitor, 0.6),
    "pottedplant": (pottedplant, 0.45),
    "bottle": (bottle, 0.15),
}
