"""Procedurally rendered indoor scenes: the ground truth behind the NYUD-v2 synthetic twin.

A random room (floor, back and side walls, ceiling) with furniture of NYU-40 classes is ray-cast
through a pinhole camera. Every label comes from the same hit per pixel, so the tasks agree with
each other the way real annotations do: depth is the hit's distance along the optical axis,
normals are the analytic normals of the surface hit, semseg its class, edges the boundaries of
semseg. The image shades a per-class colour and texture with two coloured lights, so colour
tells the class and shading tells the surface orientation: a small CNN can learn every task.

Invalid pixels exist on purpose, so ignore handling is exercised: windows and sensor drop-outs
(small holes, grazing angles) have no depth and no normals; one unlabelled clutter object is
void in semseg.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fmtlbench.tasks import IGNORE

from .raycast import Box, Cylinder, Plane, Sphere, rot_x, rot_y

#: Focal length in units of the image width (NYUD's Kinect: 519 px over 560-640 px).
FOCAL = 0.85

#: The NYU-40 classes (0-based) a scene can contain, with their base colours (RGB in 0..1).
PALETTE: dict[int, tuple[float, float, float]] = {
    0: (0.80, 0.78, 0.70),  # wall
    1: (0.55, 0.38, 0.22),  # floor
    2: (0.30, 0.45, 0.70),  # cabinet
    3: (0.75, 0.25, 0.30),  # bed
    4: (0.20, 0.60, 0.30),  # chair
    5: (0.55, 0.20, 0.60),  # sofa
    6: (0.85, 0.60, 0.15),  # table
    7: (0.45, 0.25, 0.10),  # door
    8: (0.85, 0.92, 1.00),  # window (sky, emits light)
    9: (0.35, 0.20, 0.15),  # bookshelf
    10: (0.30, 0.30, 0.35),  # picture
    15: (0.60, 0.50, 0.80),  # dresser
    17: (0.95, 0.95, 0.80),  # pillow
    19: (0.20, 0.35, 0.55),  # floor mat
    21: (0.95, 0.95, 0.95),  # ceiling
    28: (0.70, 0.55, 0.35),  # box
    31: (0.40, 0.65, 0.65),  # night stand
    34: (1.00, 0.85, 0.40),  # lamp
    39: (0.90, 0.20, 0.10),  # otherprop
}
WALL, FLOOR, WINDOW, PICTURE, DOOR, MAT, CEILING = 0, 1, 8, 10, 7, 19, 21

#: Two lights: a warm key light from above and a cool fill light from the left (world frame),
#: so that the colour of the shading says which way a surface faces.
LIGHTS = (
    (np.array([0.3, 1.0, 0.45]) / np.linalg.norm([0.3, 1.0, 0.45]), np.array([0.75, 0.70, 0.60])),
    (np.array([-1.0, 0.1, 0.35]) / np.linalg.norm([-1.0, 0.1, 0.35]), np.array([0.25, 0.30, 0.45])),
)
AMBIENT = 0.22
Part = tuple[object, int]


def intrinsics(height: int, width: int) -> tuple[float, float, float]:
    """(focal length, principal x, principal y) in pixels; pixel (u, v) has its centre at
    (u + 0.5, v + 0.5), so a camera point (x, y, z) appears at u + 0.5 = cx + f x / -z."""
    return FOCAL * width, width / 2.0, height / 2.0


# --------------------------------------------------------------------------- furniture
def _parts(x: float, z: float, angle: float, boxes: list[tuple], label: int) -> list[Part]:
    """Boxes given in an object's frame (centre offset, half sizes) placed at (x, z), turned."""
    rot = rot_y(angle)
    out: list[Part] = []
    for offset, half in boxes:
        centre = rot @ np.asarray(offset, dtype=float) + np.array([x, 0.0, z])
        out.append((Box(tuple(centre), half, angle), label))
    return out


def _legs(w: float, d: float, h: float) -> list[tuple]:
    """Four thin legs of height ``h`` under the corners of a ``2w`` x ``2d`` top."""
    corners = [(sx * (w - 0.04), sz * (d - 0.04)) for sx in (-1, 1) for sz in (-1, 1)]
    return [((x, h / 2, z), (0.025, h / 2, 0.025)) for x, z in corners]


def _table(rng: np.random.Generator, x: float, z: float, a: float) -> list[Part]:
    w, d, h = rng.uniform(0.4, 0.7), rng.uniform(0.3, 0.45), rng.uniform(0.7, 0.78)
    parts = _parts(x, z, a, [((0, h - 0.025, 0), (w, 0.025, d)), *_legs(w, d, h - 0.05)], 6)
    if rng.random() < 0.7:  # a prop on the table top
        r = rng.uniform(0.08, 0.15)
        parts.append((Sphere((x + rng.uniform(-w, w) * 0.5, h + r, z), r), 39))
    return parts


def _chair(rng: np.random.Generator, x: float, z: float, a: float) -> list[Part]:
    s, h = rng.uniform(0.2, 0.25), rng.uniform(0.42, 0.48)
    seat = ((0, h, 0), (s, 0.03, s))
    back = ((0, h + 0.25, -s + 0.02), (s, 0.25, 0.02))
    return _parts(x, z, a, [seat, back, *_legs(s, s, h - 0.03)], 4)


def _sofa(rng: np.random.Generator, x: float, z: float, a: float) -> list[Part]:
    w, d = rng.uniform(0.75, 1.0), 0.42
    seat, back = ((0, 0.21, 0), (w, 0.21, d)), ((0, 0.42, -d + 0.1), (w, 0.4, 0.1))
    arms = [((sx * (w - 0.1), 0.32, 0), (0.1, 0.32, d)) for sx in (-1, 1)]
    boxes = [seat, back, *arms]
    return _parts(x, z, a, boxes, 5)


def _bed(rng: np.random.Generator, x: float, z: float, a: float) -> list[Part]:
    w, h = rng.uniform(0.7, 0.9), rng.uniform(0.45, 0.55)
    parts = _parts(x, z, a, [((0, h / 2, 0), (w, h / 2, 1.0))], 3)
    pillow = ((0, h + 0.07, -0.8), (w * 0.7, 0.07, 0.15))
    return parts + _parts(x, z, a, [pillow], 17)


def _block(label: int, w: tuple, d: tuple, h: tuple) -> Callable[..., list[Part]]:
    """A furniture kind that is one box (cabinet, bookshelf, dresser, box, night stand)."""

    def build(rng: np.random.Generator, x: float, z: float, a: float) -> list[Part]:
        half = (rng.uniform(*w), rng.uniform(*h), rng.uniform(*d))
        return _parts(x, z, a, [((0, half[1], 0), half)], label)

    return build


def _lamp(rng: np.random.Generator, x: float, z: float, a: float) -> list[Part]:
    h = rng.uniform(1.2, 1.6)
    return [(Cylinder(x, z, 0.03, 0.0, h), 34), (Sphere((x, h + 0.15, z), 0.2), 34)]


KINDS: dict[str, tuple[float, Callable[..., list[Part]]]] = {
    "table": (0.9, _table),
    "chair": (0.45, _chair),
    "sofa": (1.1, _sofa),
    "bed": (1.3, _bed),
    "lamp": (0.3, _lamp),
    "cabinet": (0.6, _block(2, (0.3, 0.6), (0.2, 0.25), (0.4, 0.95))),
    "bookshelf": (0.55, _block(9, (0.35, 0.5), (0.15, 0.2), (0.8, 1.0))),
    "dresser": (0.6, _block(15, (0.4, 0.6), (0.22, 0.28), (0.4, 0.6))),
    "night stand": (0.35, _block(31, (0.2, 0.25), (0.2, 0.25), (0.25, 0.3))),
    "box": (0.35, _block(28, (0.12, 0.25), (0.12, 0.25), (0.1, 0.25))),
}
ROOMS = (
    ("sofa", "table", "chair", "bookshelf", "lamp", "box"),
    ("bed", "dresser", "night stand", "lamp", "chair", "box"),
    ("table", "chair", "chair", "cabinet", "bookshelf", "box"),
)


# --------------------------------------------------------------------------- scene
def _build(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[Part], list[tuple]]:
    """Camera (position, camera-to-world rotation), shapes with labels, wall/floor decals."""
    half_w, depth, ceil = rng.uniform(1.6, 2.8), rng.uniform(3.8, 6.5), rng.uniform(2.5, 3.0)
    left, right = -half_w + rng.uniform(-0.4, 0.4), half_w + rng.uniform(-0.4, 0.4)
    eye = np.array([rng.uniform(left + 0.9, right - 0.9), rng.uniform(1.2, 1.6), 0.0])
    yaw, pitch = rng.uniform(-0.3, 0.3), -rng.uniform(0.05, 0.28)
    rot = rot_y(yaw) @ rot_x(pitch)
    parts: list[Part] = [
        (Plane((0, 0, 0), (0, 1, 0)), FLOOR),
        (Plane((0, ceil, 0), (0, -1, 0)), CEILING),
        (Plane((0, 0, -depth), (0, 0, 1)), WALL),
        (Plane((left, 0, 0), (1, 0, 0)), WALL),
        (Plane((right, 0, 0), (-1, 0, 0)), WALL),
    ]
    placed: list[tuple[float, float, float]] = []
    room = ROOMS[rng.integers(len(ROOMS))]
    for kind in rng.choice(room, size=rng.integers(3, 6), replace=False):
        radius, build = KINDS[str(kind)]
        for _ in range(20):  # rejection sampling: footprints must not overlap
            bearing, dist = yaw + rng.uniform(-0.45, 0.45), rng.uniform(1.8, depth - 0.3)
            x, z = eye[0] - np.sin(bearing) * dist, -np.cos(bearing) * dist
            x = float(np.clip(x, left + radius, right - radius))
            z = float(max(z, -depth + radius))
            if all(np.hypot(x - px, z - pz) > radius + pr for px, pz, pr in placed):
                placed.append((x, z, radius))
                parts += build(rng, x, z, rng.uniform(-0.6, 0.6))
                break
    # One unlabelled clutter object: void in semseg, like NYUD's unannotated pixels.
    bearing, dist, r = yaw + rng.uniform(-0.4, 0.4), rng.uniform(1.6, 3.0), rng.uniform(0.1, 0.2)
    parts.append((Sphere((eye[0] - np.sin(bearing) * dist, r, -np.cos(bearing) * dist), r), IGNORE))
    # Decals relabel the wall/floor inside an axis-aligned world box: (label, low, high).
    wx = rng.uniform(left + 0.3, right - 1.5)
    decals = [(WINDOW, (wx, 1.0, -depth - 0.1), (wx + rng.uniform(0.8, 1.2), 2.1, -depth + 0.1))]
    px = rng.uniform(left + 0.2, right - 1.0)
    decals.append((PICTURE, (px, 1.3, -depth - 0.1), (px + 0.7, 1.8, -depth + 0.1)))
    if rng.random() < 0.6:
        dz = -rng.uniform(1.0, depth - 1.0)
        decals.append((DOOR, (right - 0.1, 0.0, dz - 0.9), (right + 0.1, 2.0, dz)))
    if rng.random() < 0.5:
        mz = -rng.uniform(2.0, depth - 1.0)
        decals.append((MAT, (eye[0] - 1.0, -0.1, mz - 0.7), (eye[0] + 1.0, 0.1, mz)))
    return eye, rot, parts, decals


def _texture(label: np.ndarray, point: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-pixel brightness pattern: planks on floors, stripes on mats and shelves, blocks on
    pictures; plain elsewhere. Patterns live in world coordinates, like real textures."""
    tex = np.ones(len(label))
    planks = np.floor(point[:, 0] / 0.25)
    tex = np.where(label == FLOOR, 0.9 + 0.2 * ((planks % 3) / 2.0), tex)
    tex = np.where(label == MAT, 0.75 + 0.5 * (np.floor(point[:, 2] / 0.12) % 2), tex)
    tex = np.where(label == 9, 0.7 + 0.6 * (np.floor(point[:, 1] / 0.18) % 2), tex)
    blocks = (np.floor(point[:, 0] / 0.14) * 7 + np.floor(point[:, 1] / 0.14) * 13) % 5
    return np.where(label == PICTURE, 0.6 + 0.5 * blocks / 4.0 + rng.uniform(-0.1, 0.1), tex)


def render_scene(seed: int, height: int, width: int) -> dict[str, np.ndarray]:
    """Render scene ``seed`` at ``height`` x ``width``; returns the raw sample contract of
    ``fmtlbench.components.Dataset.read`` (invalid pixels 255) for all four NYUD tasks."""
    if height < 2 or width < 2:
        raise ValueError(f"scene size must be at least 2x2, got {height}x{width}")
    rng = np.random.default_rng(seed)
    eye, rot, parts, decals = _build(rng)
    focal, cx, cy = intrinsics(height, width)
    v, u = np.mgrid[0:height, 0:width]
    cam_dirs = np.stack(
        [(u + 0.5 - cx) / focal, -(v + 0.5 - cy) / focal, -np.ones((height, width))], axis=-1
    ).reshape(-1, 3)
    dirs = cam_dirs @ rot.T  # z-component -1 in the camera frame: t is depth along the axis
    t = np.full(len(dirs), np.inf)
    normal = np.zeros_like(dirs)
    label = np.zeros(len(dirs), dtype=np.int64)
    for shape, cls in parts:
        t_new, n_new = shape.hit(eye, dirs)
        nearer = t_new < t
        t[nearer], normal[nearer], label[nearer] = t_new[nearer], n_new[nearer], cls
    point = eye + t[:, None] * dirs
    for cls, low, high in decals:
        inside = np.all((point >= low) & (point <= high), axis=1)
        label[inside & (label == (FLOOR if cls == MAT else WALL))] = cls
    # Sensor drop-outs: no depth through glass, at grazing angles, and in a few small holes.
    cosine = -np.einsum("ij,ij->i", normal, dirs) / np.linalg.norm(dirs, axis=1)
    invalid = (label == WINDOW) | (cosine < 0.1) | (t > 9.5)
    holes = np.zeros((height, width), dtype=bool)
    for _ in range(rng.integers(2, 5)):
        hy, hx, hr = rng.integers(height), rng.integers(width), rng.uniform(0.5, 2.5) * width / 100
        holes |= (v - hy) ** 2 + (u - hx) ** 2 <= hr**2
    invalid |= holes.reshape(-1)

    # Image: base colour x texture x two coloured lights, dimmed with distance, plus noise.
    base = np.zeros((256, 3))
    for cls, colour in PALETTE.items():
        base[cls] = np.clip(np.asarray(colour) * rng.uniform(0.85, 1.15), 0, 1)
    base[IGNORE] = rng.uniform(0.1, 0.9, size=3)
    light = AMBIENT + sum(np.clip(normal @ d, 0, None)[:, None] * c for d, c in LIGHTS)
    shade = base[label] * _texture(label, point, rng)[:, None] * light * np.exp(-0.05 * t)[:, None]
    shade = np.where((label == WINDOW)[:, None], base[WINDOW], shade)
    pixels = shade * 255 + rng.normal(0.0, 2.5, size=shade.shape)
    image = np.clip(np.round(pixels), 0, 255).astype(np.uint8).reshape(height, width, 3)

    normal_cam = normal @ rot  # world -> camera frame (rows)
    normal_cam[invalid] = IGNORE
    depth = np.where(invalid, IGNORE, t).astype(np.float32)
    semseg = label.astype(np.uint8).reshape(height, width)
    return {
        "image": image,
        "semseg": semseg,
        "depth": depth.reshape(height, width),
        "normals": normal_cam.astype(np.float32).reshape(height, width, 3),
        "edge": boundaries(semseg),
    }


def boundaries(labels: np.ndarray) -> np.ndarray:
    """1 where a pixel's 4-neighbour has another label (both sides of a boundary), else 0."""
    edge = np.zeros(labels.shape, dtype=bool)
    vertical = labels[1:, :] != labels[:-1, :]
    horizontal = labels[:, 1:] != labels[:, :-1]
    edge[1:, :] |= vertical
    edge[:-1, :] |= vertical
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    return edge.astype(np.float32)
