"""The deterministic part of the scene generator: paint a `synth_layout` street at time t.

Painter's order, far to near: sky, a distant wall of buildings/trees (which also hides the
aliasing at the horizon), the ground plane (road, sidewalks, verges, lane markings -- classified
per pixel in world coordinates, so perspective and motion come for free), facades, then trees,
vehicles and pedestrians sorted by depth. Labels and pixels are painted together, so the mask is
exact; textures, lighting and sensor noise are applied last. Vectorised numpy / OpenCV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from edgeseg.data.synth_layout import (
    BUILDING,
    CYCLE,
    MARKING,
    PED_RANGE,
    PEDESTRIAN,
    ROAD,
    SIDEWALK,
    SKY,
    TRUNK,
    VEGETATION,
    VEHICLE,
    Z_NEAR,
    Actor,
    Layout,
)


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------
def _value_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Smooth noise in [0, 1) with features about `cell` pixels wide (cheap: resize a small grid)."""
    gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
    small = rng.random((gh, gw), dtype=np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


@dataclass
class _Frame:
    """Per-frame camera state and the canvases being painted."""

    h: int
    w: int
    f: float
    hy: float
    vx: float
    cam_x: float
    cam_z: float
    cam_h: float
    img: np.ndarray
    mask: np.ndarray

    def project(self, x: float, y: float, z: float) -> tuple[float, float]:
        return self.vx + self.f * (x - self.cam_x) / z, self.hy + self.f * (self.cam_h - y) / z


def _paint_sky(fr: _Frame, lay: Layout, rng: np.random.Generator) -> None:
    # Only rows above the ground's start can stay sky; everything below is repainted anyway.
    rows = int(min(fr.h, math.floor(fr.hy + fr.f * fr.cam_h / lay.z_far) + 2))
    t = np.clip(np.arange(rows, dtype=np.float32) / max(fr.hy, 1.0), 0, 1)[:, None, None]
    grad = lay.sky_top[None, None] * (1 - t) + lay.sky_bottom[None, None] * t
    clouds = _value_noise(rng, rows, fr.w, max(8.0, fr.w / 10))
    clouds = np.clip((clouds - (1 - lay.clouds)) * 3, 0, 1)[:, :, None] * np.float32(0.8)
    fr.img[:rows] = grad * (1 - clouds) + np.float32(235) * clouds


def _paint_backdrop(fr: _Frame, lay: Layout, rng: np.random.Generator) -> None:
    """A wall of distant buildings/trees at z_far hides everything farther (and the horizon aliasing)."""
    zf = lay.z_far
    ground_y = int(min(fr.h, math.ceil(fr.hy + fr.f * fr.cam_h / zf)))
    # Blocks are fixed in world X so the camera sway moves them coherently.
    xs = np.arange(fr.w, dtype=np.float32)
    world_x = fr.cam_x + (xs - fr.vx) * zf / fr.f
    block = (np.floor(world_x / 9.0).astype(np.int64)) % len(lay.backdrop_kind)
    kind = lay.backdrop_kind[block]
    top_y = fr.hy - fr.f * (lay.backdrop_tops[block] - fr.cam_h) / zf
    top_y = np.where(kind == SKY, fr.hy, top_y)
    ys = np.arange(fr.h, dtype=np.float32)[:, None]
    inside = (ys >= top_y[None, :]) & (ys < ground_y)
    fill = np.where(kind == SKY, VEGETATION, kind).astype(np.uint8)  # a low hedge where the skyline is open
    hedge_top = fr.hy - fr.f * (1.5 - fr.cam_h) / zf
    inside |= (kind[None, :] == SKY) & (ys >= hedge_top) & (ys < ground_y)
    labels = np.broadcast_to(fill[None, :], inside.shape)
    fr.mask[inside] = labels[inside]
    haze = np.float32(0.55)
    colors = lay.backdrop_colors[block] * haze + lay.sky_bottom * (1 - haze)
    colimg = np.broadcast_to(colors[None], (fr.h, fr.w, 3))
    b = inside & (labels == BUILDING)
    fr.img[b] = colimg[b] * (0.85 + 0.3 * _value_noise(rng, fr.h, fr.w, 2.0)[b])[:, None]


MARK_MIN_PX = 1.25  # narrowest lane marking (in pixels) that is drawn at all


def _paint_ground(fr: _Frame, lay: Layout, rng: np.random.Generator) -> None:
    r0 = int(max(0, math.floor(fr.hy + fr.f * fr.cam_h / lay.z_far) + 1))
    if r0 >= fr.h:
        return
    ys = np.arange(r0, fr.h, dtype=np.float32)[:, None] + 0.5
    xs = np.arange(fr.w, dtype=np.float32)[None, :] + 0.5
    dy = ys - fr.hy
    z = fr.f * fr.cam_h / dy  # (rows, 1)
    x = fr.cam_x + (xs - fr.vx) * (fr.cam_h / dy)  # (rows, W) world lateral
    zw = z + fr.cam_z
    rows, w = x.shape
    half = lay.road_w / 2
    ax = np.abs(x)
    sw = np.where(x < 0, lay.sw_left, lay.sw_right)
    label = np.full((rows, w), VEGETATION, np.uint8)
    label[ax < half + sw] = SIDEWALK
    road = ax < half
    label[road] = ROAD
    # Lane markings live in world coordinates, so perspective and motion come for free.
    # Far away a line is thinner than a pixel and a dash shorter than one: there it is worn off
    # (neither painted nor labelled), so every marking pixel is visibly a marking.
    mw = lay.marking_w / 2
    wide = fr.f * lay.marking_w / z >= MARK_MIN_PX  # (rows, 1)
    long = fr.f * fr.cam_h * lay.dash_len / (z * z) >= 2 * MARK_MIN_PX
    mark = np.zeros((rows, w), bool)
    dashed = (np.mod(zw, lay.dash_period) < lay.dash_len) & wide & long
    for k in range(1, lay.lanes):
        mark |= (np.abs(x - (-half + k * lay.lane_w)) < mw) & dashed
    if lay.edge_lines:
        mark |= (np.abs(ax - (half - 0.35)) < mw) & wide
    label[mark & road] = MARKING
    fr.mask[r0:] = label

    fine = rng.random((rows, w), dtype=np.float32)
    coarse = _value_noise(rng, rows, w, max(4.0, w / 24))
    gain = 0.71 + 0.18 * fine + 0.22 * coarse
    # Sidewalk tiles in world coordinates, faded where a tile gets smaller than a few pixels.
    strength = np.clip((fr.f * lay.tile / z - 3) / 6, 0, 1)
    grout = (np.mod(x, lay.tile) < 0.06) | (np.mod(zw, lay.tile) < 0.06)
    curb = np.abs(ax - half) < 0.18
    gain *= np.where(label == SIDEWALK, 1 - 0.3 * grout * strength + 0.25 * curb, 1)
    gain *= np.where(x < lay.shadow_x, np.float32(lay.shadow_gain), np.float32(1))
    lut = np.zeros((256, 3), np.float32)  # vegetation stays 0: the leaf pass paints it
    lut[ROAD], lut[SIDEWALK], lut[MARKING] = lay.road_rgb, lay.sidewalk_rgb, lay.marking_rgb
    fr.img[r0:] = lut[label] * gain[:, :, None]


def _paint_facades(fr: _Frame, lay: Layout, rng: np.random.Generator) -> None:
    """Building fronts along the street: vertical planes, one building per segment of world Z."""
    xs = np.arange(fr.w, dtype=np.float32) + 0.5
    for side in lay.sides:
        rel = side.x - fr.cam_x
        dx = xs - fr.vx
        with np.errstate(divide="ignore", invalid="ignore"):
            z = fr.f * rel / dx
        cols = np.nonzero((np.sign(dx) == np.sign(rel)) & (z > 0.3) & (z < lay.z_far))[0]
        if cols.size == 0:
            continue
        zc = z[cols]
        zw = np.mod(zc + fr.cam_z, CYCLE)
        idx = np.clip(np.searchsorted(side.starts, zw, side="right") - 1, 0, len(side.segments) - 1)
        seg = side.arrays()
        height = seg["height"][idx]
        # A building cut by the far wall would leave a sliver; show it only once wholly in range.
        height[(side.starts[idx] + seg["length"][idx] - zw + zc) > lay.z_far] = 0
        top = fr.hy - fr.f * (height - fr.cam_h) / zc
        bottom = fr.hy + fr.f * fr.cam_h / zc
        built = height > 0
        if not built.any():
            continue
        r0 = int(np.clip(np.floor(top[built].min()), 0, fr.h))
        r1 = int(np.clip(np.ceil(bottom[built].max()) + 1, 0, fr.h))
        if r0 >= r1:
            continue
        ys = np.arange(r0, r1, dtype=np.float32)[:, None] + 0.5
        inside = (ys >= top[None]) & (ys < bottom[None]) & built[None]
        floor_h, period = seg["floor_h"][idx], seg["period"][idx]
        world_y = fr.cam_h - (ys - fr.hy) * (zc / fr.f)[None]  # (rows, ncols) metres above ground
        fade = np.clip((np.minimum(floor_h, period) * fr.f / zc - 4) / 6, 0, 1)  # windows fade when tiny
        win = (
            (np.mod(world_y - 0.9, floor_h[None]) < floor_h[None] * 0.55)
            & (np.mod(zw - side.starts[idx], period) < period * seg["win_w"][idx])[None]
            & (world_y > 2.5)
            & (world_y < height[None] - 0.8)
        )
        wall = seg["wall"][idx] * side.light
        window = seg["window"][idx] * side.light
        mix = (win * fade[None])[..., None]
        colw = wall[None] + (window - wall)[None] * mix
        # The columns are one contiguous run (depth is monotonic on each side), so views suffice.
        c0, c1 = int(cols[0]), int(cols[-1]) + 1
        assert c1 - c0 == cols.size
        fr.img[r0:r1, c0:c1][inside] = colw[inside]
        fr.mask[r0:r1, c0:c1][inside] = BUILDING


def _poly(fr: _Frame, pts: list[tuple[float, float]], label: int, color: np.ndarray | None) -> None:
    arr = np.round(np.asarray(pts, np.float64) * 16).astype(np.int32)[None]
    cv2.fillPoly(fr.mask, arr, int(label), lineType=cv2.LINE_8, shift=4)
    if color is not None:
        cv2.fillPoly(fr.img, arr, color.tolist(), lineType=cv2.LINE_8, shift=4)


def _box(fr: _Frame, x0: float, x1: float, y0: float, y1: float, z: float, label: int, color) -> None:
    """An upright rectangle in the plane at depth z (world metres)."""
    (u0, v0), (u1, v1) = fr.project(x0, y0, z), fr.project(x1, y1, z)
    _poly(fr, [(u0, v1), (u1, v1), (u1, v0), (u0, v0)], label, color)


def _ellipse(fr: _Frame, x: float, y: float, z: float, rx: float, ry: float, label: int, color) -> None:
    u, v = fr.project(x, y, z)
    axes = (max(1, round(fr.f * rx / z * 16)), max(1, round(fr.f * ry / z * 16)))
    center = (round(u * 16), round(v * 16))
    cv2.ellipse(fr.mask, center, axes, 0, 0, 360, int(label), -1, cv2.LINE_8, 4)
    if color is not None:
        cv2.ellipse(fr.img, center, axes, 0, 0, 360, color.tolist(), -1, cv2.LINE_8, 4)


def _draw_tree(fr: _Frame, a: Actor, z: float) -> None:
    trunk_h, crown, trunk_w = a.size
    _box(fr, a.x - trunk_w / 2, a.x + trunk_w / 2, 0, trunk_h + crown * 0.5, z, TRUNK, a.colors[0])
    # A few overlapping blobs make irregular crowns of different sizes.
    for k in range(a.style):
        ang = a.phase + k * 2.4
        ox, oy = math.cos(ang) * crown * 0.45, math.sin(ang) * crown * 0.35
        r = crown * (0.55 + 0.12 * ((k * 7) % 4))
        _ellipse(fr, a.x + ox, trunk_h + crown * 0.8 + oy, z, r, r * 0.9, VEGETATION, None)


def _draw_vehicle(fr: _Frame, a: Actor, z: float) -> None:
    w, h = a.size
    body, glass = a.colors
    x = a.x
    dark = np.array([20, 20, 22], np.float32)
    # Shadow on the ground (image only), then wheels, body, cabin.
    u, v = fr.project(x, 0, z)
    axes = (max(1, round(fr.f * w * 0.6 / z)), max(1, round(fr.f * 0.25 / z)))
    cv2.ellipse(fr.img, (round(u), round(v)), axes, 0, 0, 360, (0, 0, 0), -1)
    for x0 in (x - w / 2, x + w / 2 - 0.32):  # wheels, below the body's lower edge
        _box(fr, x0, x0 + 0.32, 0, 0.5, z, VEHICLE, dark)
    if a.style == 1:  # truck / bus: one tall box with a windscreen band
        _box(fr, x - w / 2, x + w / 2, 0.3, h, z, VEHICLE, body)
        _box(fr, x - w / 2 + 0.12, x + w / 2 - 0.12, h * 0.62, h - 0.15, z, VEHICLE, glass)
        _box(fr, x - w / 2, x + w / 2, 0.3, 0.55, z, VEHICLE, body * 0.6)
    else:
        _box(fr, x - w / 2, x + w / 2, 0.3, h * 0.62, z, VEHICLE, body)
        cab = [
            fr.project(x - w * 0.45, h * 0.62, z),
            fr.project(x - w * 0.33, h, z),
            fr.project(x + w * 0.33, h, z),
            fr.project(x + w * 0.45, h * 0.62, z),
        ]
        _poly(fr, cab, VEHICLE, body * 0.92)
        win = [
            fr.project(x - w * 0.39, h * 0.65, z),
            fr.project(x - w * 0.3, h * 0.95, z),
            fr.project(x + w * 0.3, h * 0.95, z),
            fr.project(x + w * 0.39, h * 0.65, z),
        ]
        _poly(fr, win, VEHICLE, glass)
    # Tail lights when driving away, head lights when oncoming.
    lamp = np.array([255, 60, 40] if a.speed > 0 else [250, 245, 210], np.float32)
    lo, hi = (h * 0.42, h * 0.52) if a.style == 0 else (0.65, 0.85)
    for sx in (-1, 1):
        cx = x + sx * (w / 2 - 0.25)
        _box(fr, cx - 0.15, cx + 0.15, lo, hi, z, VEHICLE, lamp)
    _box(fr, x - 0.25, x + 0.25, 0.38, 0.5, z, VEHICLE, np.array([235, 235, 235], np.float32))


def _draw_pedestrian(fr: _Frame, a: Actor, z: float, t: float) -> None:
    (hp,) = a.size
    skin, shirt, pants = a.colors
    x = a.x
    stride = 0.22 * math.sin(a.phase + t * 2 * math.pi * 1.6 * abs(a.speed) / 1.3)
    hip, shoulder = hp * 0.5, hp * 0.82
    for s in (-1, 1):  # legs: the stride shows as a lateral spread in this (frontal) view
        fx = x + s * (0.1 + stride * 0.5 * s)
        _poly(fr, [fr.project(x + s * 0.02, hip, z), fr.project(x + s * 0.19, hip, z),
                   fr.project(fx + s * 0.08, 0, z), fr.project(fx - s * 0.06, 0, z)], PEDESTRIAN, pants)  # fmt: skip
    _poly(fr, [fr.project(x - 0.22, hip, z), fr.project(x + 0.22, hip, z),
               fr.project(x + 0.26, shoulder, z), fr.project(x - 0.26, shoulder, z)], PEDESTRIAN, shirt)  # fmt: skip
    for s in (-1, 1):
        swing = -s * stride * 0.6
        _poly(fr, [fr.project(x + s * 0.23, shoulder, z), fr.project(x + s * 0.33, shoulder - 0.05, z),
                   fr.project(x + s * 0.32 + swing, hip - 0.05, z), fr.project(x + s * 0.23 + swing, hip - 0.05, z)],
              PEDESTRIAN, shirt * 0.85)  # fmt: skip
    _ellipse(fr, x, hp - 0.12, z, 0.11, 0.13, PEDESTRIAN, skin)


def _paint_actors(fr: _Frame, lay: Layout, t: float) -> None:
    """Trees, vehicles and pedestrians, far to near so nearer ones occlude."""
    placed: list[tuple[float, Actor]] = []
    for a in lay.actors:
        if a.kind == VEGETATION:
            z = np.mod(a.z0 - fr.cam_z - Z_NEAR, CYCLE) + Z_NEAR
        else:
            # Moving actors bounce between a near and a far depth (a triangle wave) instead of
            # wrapping, so nothing pops into view: they turn around hidden behind the far wall or,
            # at the near end, at a distance where they would otherwise fill the frame.
            own_lane = a.kind == VEHICLE and abs(a.x - fr.cam_x) < lay.lane_w * 0.75
            if a.kind == PEDESTRIAN:  # people stay near enough to be a few pixels wide
                lo, hi = PED_RANGE[0], min(PED_RANGE[1], lay.z_far - 2)
            else:
                lo, hi = (7.0 if own_lane else 2.5), lay.z_far + 12
            span = hi - lo
            phase = np.mod(a.z0 - lo + (a.speed - lay.cam_speed) * t, 2 * span)
            z = lo + span - abs(phase - span)
        if z < lay.z_far:
            placed.append((float(z), a))
    placed.sort(key=lambda p: -p[0])
    for z, a in placed:
        if a.kind == VEGETATION:
            _draw_tree(fr, a, z)
        elif a.kind == VEHICLE:
            _draw_vehicle(fr, a, z)
        else:
            _draw_pedestrian(fr, a, z, t)


def _finish(fr: _Frame, lay: Layout, rng: np.random.Generator, light: float) -> np.ndarray:
    """Leaf textures, lighting, blur and sensor noise; returns the uint8 RGB image."""
    leaf = fr.mask == VEGETATION
    if leaf.any():
        shade = (
            0.45
            + 0.55 * _value_noise(rng, fr.h, fr.w, 2.0)[leaf]
            + 0.35 * _value_noise(rng, fr.h, fr.w, 7.0)[leaf]
        )
        ground = np.nonzero(leaf)[0] > fr.hy + 2
        hue = np.where(ground[:, None], lay.grass_rgb, lay.leaf_rgb)
        fr.img[leaf] = hue * shade[:, None]
    fr.mask[fr.mask == TRUNK] = VEGETATION
    img = fr.img
    img *= np.float32(lay.brightness * light) * lay.tint
    np.clip(img, 0, 255, out=img)
    out = img.astype(np.uint8)
    if abs(lay.gamma - 1) > 0.02:
        lut = (np.power(np.arange(256, dtype=np.float32) / 255, lay.gamma) * 255).astype(np.uint8)
        out = cv2.LUT(out, lut)
    if lay.blur:
        out = cv2.GaussianBlur(out, (3, 3), 0.8)
    noise = rng.standard_normal((fr.h, fr.w), dtype=np.float32) * np.float32(lay.noise)
    chroma = rng.standard_normal((fr.h // 2 + 1, fr.w // 2 + 1, 3), dtype=np.float32) * np.float32(
        lay.noise * 0.4
    )
    chroma = cv2.resize(chroma, (fr.w, fr.h), interpolation=cv2.INTER_NEAREST)
    chroma += noise[:, :, None]
    chroma += out
    return np.clip(chroma, 0, 255, out=chroma).astype(np.uint8)


def render(
    lay: Layout, height: int, width: int, t: float, cam_z: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8, labels uint8) of street `lay` at time `t` (s) with the camera at depth `cam_z` (m)."""
    sway = lay.drift * math.sin(t * 0.7)
    yaw = 0.015 * math.sin(t * 0.45 + 1.0)
    fr = _Frame(
        h=height,
        w=width,
        f=lay.focal * width,
        hy=lay.horizon * height,
        vx=(lay.vx + yaw) * width,
        cam_x=lay.cam_x + sway,
        cam_z=cam_z,
        cam_h=lay.cam_h,
        img=np.empty((height, width, 3), np.float32),
        mask=np.zeros((height, width), np.uint8),
    )
    _paint_sky(fr, lay, rng)
    _paint_backdrop(fr, lay, rng)
    _paint_ground(fr, lay, rng)
    _paint_facades(fr, lay, rng)
    _paint_actors(fr, lay, t)
    light = 1.0 + 0.08 * math.sin(t * 0.3)  # slow cloud-shadow breathing in videos
    return _finish(fr, lay, rng, light), fr.mask
