"""Procedurally rendered photos: the ground truth behind the PASCAL-Context synthetic twin.

A photo is an outdoor scene (ground, sky, buildings, trees) or a living room (floor, walls,
ceiling) with one or two salient subjects near the camera (people, animals, vehicles,
furniture) and a few other objects further away, ray-cast through a pinhole camera aimed at
the main subject. Every label comes from the same hit per pixel, so the tasks agree with each
other as real annotations do:

- ``semseg``: the VOC class of the object hit (0 = background);
- ``label_map``: the full-detail PASCAL-Context id (sky, grass, road, building, person, ...),
  whose boundaries give the edges;
- ``parts``: the body part of the person hit (6 groups); ignore (255) on people without part
  annotations and everywhere in photos without an annotated person;
- ``normals``: the analytic surface normal in the camera frame (the sky has none);
- ``saliency``: the salient subjects;
- ``objects``: the PASCAL-Part annotation (visible masks of objects and their parts).

Colours tell classes, shading tells surface orientation: a small CNN can learn every task.
"""

from __future__ import annotations

import numpy as np

from fmtlbench.tasks import IGNORE

from .annotation import PART_GROUPS, PERSON, AnnotatedObject
from .contour import label_edges
from .figures import BUILDERS, Figure, Piece
from .raycast import Box, Cylinder, Plane, Sphere, rot_x, rot_y

#: Focal length in units of the image width (about 53 degrees of horizontal view).
FOCAL = 1.0
#: PASCAL-Context ids of the stuff classes the twin uses (the 459-class label list).
SKY, GRASS, ROAD, GROUND, BUILDING, TREE, WALL, FLOOR, CEILING = (
    360, 187, 324, 189, 44, 420, 440, 158, 68
)  # fmt: skip
STUFF_COLOURS: dict[int, tuple[float, float, float]] = {
    GRASS: (0.3, 0.6, 0.2), ROAD: (0.35, 0.35, 0.37), GROUND: (0.6, 0.5, 0.35),
    BUILDING: (0.7, 0.55, 0.45), TREE: (0.15, 0.45, 0.15), WALL: (0.85, 0.82, 0.72),
    FLOOR: (0.55, 0.38, 0.22), CEILING: (0.95, 0.95, 0.95),
}  # fmt: skip
OUTDOOR_SUBJECTS = {"person": 0.4, "dog": 0.1, "horse": 0.08, "cow": 0.06, "sheep": 0.06,
                    "car": 0.12, "bus": 0.05, "bird": 0.05, "aeroplane": 0.08}  # fmt: skip
INDOOR_SUBJECTS = {"person": 0.4, "cat": 0.15, "dog": 0.1, "tvmonitor": 0.1, "chair": 0.1,
                   "pottedplant": 0.08, "sofa": 0.07}  # fmt: skip
#: Subjects placed further than the usual near range (big ones) or nearer (small ones).
DISTANCE_SCALE = {"bus": 3.0, "car": 1.6, "horse": 1.3, "cow": 1.3, "bird": 0.5,
                  "aeroplane": 15.0}  # fmt: skip
OUTDOOR_EXTRAS = ("person", "car", "dog", "bird", "bus")
INDOOR_EXTRAS = ("chair", "sofa", "diningtable", "pottedplant", "bottle", "tvmonitor")
#: Lights (direction towards the light, colour): a warm sun from above, a cool sky fill.
LIGHTS = (
    (np.array([0.4, 1.0, 0.5]) / np.linalg.norm([0.4, 1.0, 0.5]), np.array([0.8, 0.75, 0.65])),
    (np.array([-0.8, 0.3, 0.5]) / np.linalg.norm([-0.8, 0.3, 0.5]), np.array([0.2, 0.25, 0.4])),
)


def _choose(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = list(weights)
    p = np.array([weights[n] for n in names])
    return names[rng.choice(len(names), p=p / p.sum())]


def _stuff(kind: int, shape: object) -> Figure:
    """A background surface: VOC background (0) with its own PASCAL-Context id."""
    return Figure(0, "", kind, [Piece(shape, STUFF_COLOURS[kind])])


def _place(
    rng: np.random.Generator,
    figures: list[Figure],
    taken: list[tuple[float, float, float]],
    name: str,
    dist: float,
    bearing: float,
    salient: bool,
    annotated: bool = True,
) -> bool:
    """Add figure ``name`` at ``dist`` metres from the camera, ``bearing`` radians off its
    axis, unless its footprint would overlap one in ``taken`` (x, z, radius)."""
    build, radius = BUILDERS[name]
    x, z = np.sin(bearing) * dist, -np.cos(bearing) * dist
    if any(np.hypot(x - px, z - pz) < radius + pr for px, pz, pr in taken):
        return False
    yaw = rng.uniform(-np.pi, np.pi) if name != "person" else rng.uniform(-1.2, 1.2)
    figure = build(rng, float(x), float(z), float(yaw))
    figure.salient, figure.annotated = salient, annotated
    figures.append(figure)
    taken.append((x, z, radius))
    return True


def _compose(rng: np.random.Generator) -> tuple[list[Figure], float, float]:
    """All figures of one photo, the camera height and the pitch that frames the subject."""
    indoor = rng.random() < 0.35
    figures: list[Figure] = []
    taken: list[tuple[float, float, float]] = []
    if indoor:
        half, back, ceil = rng.uniform(2.5, 4.0), rng.uniform(5.0, 9.0), rng.uniform(2.5, 3.0)
        figures += [
            _stuff(FLOOR, Plane((0, 0, 0), (0, 1, 0))),
            _stuff(CEILING, Plane((0, ceil, 0), (0, -1, 0))),
            _stuff(WALL, Plane((0, 0, -back), (0, 0, 1))),
            _stuff(WALL, Plane((-half, 0, 0), (1, 0, 0))),
            _stuff(WALL, Plane((half, 0, 0), (-1, 0, 0))),
        ]
        subjects, extras, near = INDOOR_SUBJECTS, INDOOR_EXTRAS, (1.8, 3.5)
        far = (3.5, back - 0.5)
    else:
        ground = [GRASS, ROAD, GROUND][rng.integers(3)]
        figures.append(_stuff(ground, Plane((0, 0, 0), (0, 1, 0))))
        if ground == GRASS and rng.random() < 0.5:  # a road across the meadow
            z0 = -rng.uniform(6.0, 15.0)
            figures.append(_stuff(ROAD, Box((0, -0.49, z0), (80.0, 0.5, rng.uniform(2, 4)))))
        for _ in range(rng.integers(0, 4)):
            w, h, x = rng.uniform(6, 15), rng.uniform(6, 25), rng.uniform(-50, 50)
            figures.append(_stuff(BUILDING, Box((x, h, -rng.uniform(35, 70)), (w, h, 5.0))))
        for _ in range(rng.integers(0, 4)):
            x, z = rng.uniform(-25, 25), -rng.uniform(12, 35)
            crown = rng.uniform(1.6, 2.6)
            figures.append(_stuff(TREE, Sphere((x, 2.5 + crown, z), crown)))
            figures[-1].pieces.append(Piece(Cylinder(x, z, 0.25, 0.0, 2.6), (0.35, 0.22, 0.1)))
        subjects, extras, near, far = OUTDOOR_SUBJECTS, OUTDOOR_EXTRAS, (3.0, 7.0), (10.0, 25.0)
    main = _choose(rng, subjects)
    dist = rng.uniform(*near) * DISTANCE_SCALE.get(main, 1.0)
    _place(rng, figures, taken, main, dist, rng.uniform(-0.15, 0.15), salient=True)
    subject = figures[-1]
    if main == "person" and rng.random() < 0.5:  # a second person next to the first
        _place(rng, figures, taken, "person", dist + rng.uniform(-0.5, 1.0),
               rng.uniform(0.12, 0.3) * rng.choice([-1, 1]), salient=True)  # fmt: skip
    for _ in range(rng.integers(1, 4)):
        name = extras[rng.integers(len(extras))]
        _place(rng, figures, taken, name, rng.uniform(*far), rng.uniform(-0.45, 0.45),
               salient=False, annotated=False)  # fmt: skip
    eye = rng.uniform(1.2, 1.7)
    target = _middle_height(subject) * rng.uniform(0.7, 1.1)
    return figures, eye, float(np.arctan2(target - eye, dist))


def _middle_height(figure: Figure) -> float:
    """Height of the middle of a figure's pieces (where the camera aims)."""
    heights = []
    for piece in figure.pieces:
        shape = piece.shape
        if isinstance(shape, Cylinder):
            heights.append((shape.bottom + shape.top) / 2)
        else:
            heights.append(float(shape.center[1]))
    return float(np.mean(heights))


def render_photo(seed: int, height: int, width: int) -> dict:
    """Render photo ``seed`` at ``height`` x ``width`` (see the module docstring)."""
    if height < 2 or width < 2:
        raise ValueError(f"photo size must be at least 2x2, got {height}x{width}")
    rng = np.random.default_rng(seed)
    figures, eye_height, pitch = _compose(rng)
    eye = np.array([0.0, eye_height, 0.0])
    rot = rot_y(rng.uniform(-0.05, 0.05)) @ rot_x(pitch)
    focal = FOCAL * width
    v, u = np.mgrid[0:height, 0:width]
    cam = np.stack([(u + 0.5 - width / 2) / focal, -(v + 0.5 - height / 2) / focal,
                    -np.ones((height, width))], axis=-1).reshape(-1, 3)  # fmt: skip
    dirs = cam @ rot.T
    pieces = [(f, p) for f in figures for p in f.pieces]
    t, normal, hit = _cast(figures, eye, dirs)
    sky = hit < 0
    point = eye + np.where(sky, 0.0, t)[:, None] * dirs

    # Per-piece tables, indexed by hit + 1 (row 0 is the sky).
    figure_of = np.array([-1] + [figures.index(f) for f, _ in pieces])
    voc = np.array([0] + [f.voc for f, _ in pieces])
    context = np.array([SKY] + [f.context for f, _ in pieces])
    salient = np.array([False] + [f.salient for f, _ in pieces])
    colour = np.array([(0.5, 0.7, 0.95)] + [p.colour for _, p in pieces])
    pattern = np.array([""] + [p.pattern for _, p in pieces])
    row = hit + 1

    light = 0.25 + sum(np.clip(normal @ d, 0, None)[:, None] * c for d, c in LIGHTS)
    shade = colour[row] * _texture(context[row], pattern[row], point)[:, None] * light
    shade *= np.exp(-0.004 * np.where(sky, 0.0, t))[:, None]
    up = np.clip(dirs[:, 1] / np.linalg.norm(dirs, axis=1), 0, 1)[:, None]
    sky_colour = np.array([0.85, 0.9, 0.97]) * (1 - up) + np.array([0.35, 0.55, 0.9]) * up
    shade = np.where(sky[:, None], sky_colour, shade)
    pixels = shade * 255 + rng.normal(0.0, 2.5, size=shade.shape)
    image = np.clip(np.round(pixels), 0, 255).astype(np.uint8).reshape(height, width, 3)

    normal_cam = normal @ rot
    normal_cam[sky] = IGNORE
    label_map = context[row].astype(np.uint16).reshape(height, width)
    objects, parts = _annotation(figures, pieces, row, figure_of, (height, width))
    return {
        "image": image,
        "semseg": voc[row].astype(np.uint8).reshape(height, width),
        "parts": parts,
        "normals": normal_cam.astype(np.float32).reshape(height, width, 3),
        "edge": label_edges(label_map),
        "saliency": salient[row].astype(np.float32).reshape(height, width),
        "label_map": label_map,
        "objects": objects,
    }


def _extent(shape: object) -> tuple[np.ndarray, float] | None:
    """Centre and radius of a ball holding ``shape`` (None for unbounded planes)."""
    if isinstance(shape, Sphere):
        return np.asarray(shape.center, dtype=float), shape.radius
    if isinstance(shape, Box):
        return np.asarray(shape.center, dtype=float), float(np.linalg.norm(shape.half))
    if isinstance(shape, Cylinder):
        half = (shape.top - shape.bottom) / 2
        centre = np.array([shape.x, shape.bottom + half, shape.z])
        return centre, float(np.hypot(shape.radius, half))
    return None


def _cast(figures: list[Figure], eye: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, ...]:
    """Nearest hit per ray: (t, world normal, index of the piece in figure order or -1).

    A figure's pieces are only tested on the rays that meet a ball bounding the figure,
    which makes rendering people (nineteen pieces each) several times faster.
    """
    t = np.full(len(dirs), np.inf)
    normal = np.zeros_like(dirs)
    hit = np.full(len(dirs), -1)
    index = 0
    for figure in figures:
        extents = [_extent(piece.shape) for piece in figure.pieces]
        rays = np.arange(len(dirs))
        if all(e is not None for e in extents):
            centre = np.mean([c for c, _ in extents], axis=0)
            radius = max(np.linalg.norm(c - centre) + r for c, r in extents) * 1.001
            if np.linalg.norm(eye - centre) > radius:  # else every ray may hit it
                rays = np.flatnonzero(np.isfinite(Sphere(tuple(centre), radius).hit(eye, dirs)[0]))
        for piece in figure.pieces:
            if len(rays):
                t_new, n_new = piece.shape.hit(eye, dirs[rays])
                nearer = t_new < t[rays]
                chosen = rays[nearer]
                t[chosen], normal[chosen], hit[chosen] = t_new[nearer], n_new[nearer], index
            index += 1
    return t, normal, hit


def _texture(context: np.ndarray, pattern: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Brightness patterns in world coordinates: grass tufts, window grids on buildings, cow
    patches, cat stripes, wool; plain elsewhere."""
    x, y, z = point[:, 0], point[:, 1], point[:, 2]
    tex = np.ones(len(context))
    tex = np.where(context == GRASS, 0.85 + 0.3 * (np.sin(x * 9) * np.sin(z * 7) > 0.2), tex)
    grid = (np.floor(x / 2.5) % 2 == 0) & (np.floor(y / 3.0) % 2 == 1)
    tex = np.where(context == BUILDING, np.where(grid, 0.45, 1.0), tex)
    tex = np.where(context == FLOOR, 0.9 + 0.2 * (np.floor(x / 0.3) % 2), tex)
    tex = np.where(pattern == "patches", np.where(np.sin(x * 6) * np.sin(z * 5) > 0.1, 0.1, 1), tex)
    tex = np.where(pattern == "stripes", 0.75 + 0.4 * (np.floor(z / 0.05) % 2), tex)
    return np.where(pattern == "wool", 0.9 + 0.15 * (np.sin(x * 40) * np.sin(y * 40) > 0), tex)


def _annotation(
    figures: list[Figure],
    pieces: list[tuple[Figure, Piece]],
    row: np.ndarray,
    figure_of: np.ndarray,
    shape: tuple[int, int],
) -> tuple[list[AnnotatedObject], np.ndarray]:
    """PASCAL-Part objects (visible masks) and the part-group map, from the hit table."""
    part_of = np.array([""] + [p.part for _, p in pieces])
    group = np.array([0] + [PART_GROUPS.get(p.part, 0) for _, p in pieces])
    objects: list[AnnotatedObject] = []
    parts = np.zeros(len(row), dtype=np.uint8)
    annotated_person = False
    for index, figure in enumerate(figures):
        if figure.voc == 0:
            continue
        mine = figure_of[row] == index
        if not mine.any():
            continue
        named = []
        if figure.annotated:
            for name in dict.fromkeys(p.part for p in figure.pieces if p.part):
                mask = mine & (part_of[row] == name)
                if mask.any():
                    named.append((name, mask.reshape(shape)))
        objects.append(AnnotatedObject(figure.name, figure.voc, mine.reshape(shape), named))
        if figure.voc == PERSON:
            parts[mine] = group[row][mine] if named else IGNORE
            annotated_person |= bool(named)
    if not annotated_person:
        parts[:] = IGNORE
    return objects, parts.reshape(shape)
