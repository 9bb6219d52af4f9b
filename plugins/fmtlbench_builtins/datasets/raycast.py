"""Vectorised ray casting against the few shapes an indoor scene is made of.

Every shape answers ``hit(origin, dirs)`` for one shared ray origin and N directions with the
ray parameter ``t`` of the first intersection in front of the origin (``inf`` on a miss) and the
outward unit normal there, both in world coordinates. The renderer keeps the nearest hit per
pixel (a z-buffer), so shapes may overlap freely and need no scene graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Hits closer than this are discarded (a ray must not hit the surface it starts on).
EPS = 1e-6

Hit = tuple[np.ndarray, np.ndarray]


def rot_y(angle: float) -> np.ndarray:
    """Rotation by ``angle`` radians about the vertical (y) axis; maps local to world."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_x(angle: float) -> np.ndarray:
    """Rotation by ``angle`` radians about the x axis (camera pitch; positive looks up)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


@dataclass(frozen=True)
class Plane:
    """An infinite plane through ``point``; only its ``normal`` side is visible (room walls)."""

    point: tuple[float, float, float]
    normal: tuple[float, float, float]

    def hit(self, origin: np.ndarray, dirs: np.ndarray) -> Hit:
        normal = np.asarray(self.normal, dtype=float)
        facing = dirs @ normal
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (np.asarray(self.point) - origin) @ normal / facing
        t = np.where((facing < 0) & (t > EPS), t, np.inf)
        return t, np.broadcast_to(normal, dirs.shape)


@dataclass(frozen=True)
class Box:
    """A box standing upright, turned by ``angle`` about y (furniture is never tilted)."""

    center: tuple[float, float, float]
    half: tuple[float, float, float]
    angle: float = 0.0

    def hit(self, origin: np.ndarray, dirs: np.ndarray) -> Hit:
        rot = rot_y(self.angle)
        half = np.asarray(self.half)
        # Row vectors: local = world @ rot, world = local @ rot.T (rot is orthonormal).
        o_local = (origin - np.asarray(self.center)) @ rot
        d_local = dirs @ rot
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / d_local
            t1 = (-half - o_local) * inv
            t2 = (half - o_local) * inv
        near = np.minimum(t1, t2)
        axis = np.argmax(near, axis=1)  # the slab entered last is the face that was hit
        rows = np.arange(len(dirs))
        t_near = near[rows, axis]
        t_far = np.maximum(t1, t2).min(axis=1)
        t = np.where((t_near <= t_far) & (t_near > EPS), t_near, np.inf)
        n_local = np.zeros_like(dirs)
        n_local[rows, axis] = -np.sign(d_local[rows, axis])
        return t, n_local @ rot.T


@dataclass(frozen=True)
class Sphere:
    """A ball (lamp shades, props)."""

    center: tuple[float, float, float]
    radius: float

    def hit(self, origin: np.ndarray, dirs: np.ndarray) -> Hit:
        center = np.asarray(self.center)
        oc = origin - center
        a = np.einsum("ij,ij->i", dirs, dirs)
        b = dirs @ oc
        disc = b * b - a * (oc @ oc - self.radius**2)
        root = np.sqrt(np.maximum(disc, 0.0))
        t = (-b - root) / a
        t = np.where((disc >= 0) & (t > EPS), t, np.inf)
        hit = np.isfinite(t)
        normal = (origin + np.where(hit, t, 0.0)[:, None] * dirs - center) / self.radius
        return t, np.where(hit[:, None], normal, 0.0)


@dataclass(frozen=True)
class Cylinder:
    """A vertical cylinder from ``bottom`` to ``top`` (lamp stands, bins), with a top cap."""

    x: float
    z: float
    radius: float
    bottom: float
    top: float

    def hit(self, origin: np.ndarray, dirs: np.ndarray) -> Hit:
        ox, oz = origin[0] - self.x, origin[2] - self.z
        dx, dz = dirs[:, 0], dirs[:, 2]
        a = dx * dx + dz * dz
        b = ox * dx + oz * dz
        disc = b * b - a * (ox * ox + oz * oz - self.radius**2)
        with np.errstate(divide="ignore", invalid="ignore"):
            t_side = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
        y = origin[1] + t_side * dirs[:, 1]
        side = (disc >= 0) & (a > 0) & (t_side > EPS) & (y >= self.bottom) & (y <= self.top)
        t_at = np.where(side, t_side, 0.0)
        side_normal = np.stack([ox + t_at * dx, np.zeros_like(dx), oz + t_at * dz], axis=1)
        side_normal /= self.radius
        t_side = np.where(side, t_side, np.inf)
        # From outside, the top disc is reachable only when the eye is above it.
        t_cap = np.full(len(dirs), np.inf)
        if origin[1] > self.top:
            with np.errstate(divide="ignore", invalid="ignore"):
                t = (self.top - origin[1]) / dirs[:, 1]
                px, pz = ox + t * dx, oz + t * dz
                cap = (dirs[:, 1] < 0) & (px * px + pz * pz <= self.radius**2)
            t_cap = np.where(cap, t, np.inf)
        use_cap = t_cap < t_side
        t = np.minimum(t_side, t_cap)
        normal = np.where(use_cap[:, None], np.array([0.0, 1.0, 0.0]), side_normal)
        return t, np.where(np.isfinite(t)[:, None], normal, 0.0)
