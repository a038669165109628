"""Procedural road scenes with exact ground truth, for training, demos, calibration and stream tests.

No dataset can be downloaded here, so edgeseg ships a generator whose scenes are *learnable but not
trivial*: a pinhole camera looks down a street (road, sidewalks, verges, building facades, a distant
skyline) populated with trees, vehicles and pedestrians at many depths. Classes overlap in colour
(grey sky vs. grey walls vs. grey cars, green cars vs. trees) so a net must use texture, shape and
context (windows, tiles, leaf noise, lane geometry), while lighting, shadows, tint, blur and sensor
noise vary per scene so INT8 quantisation errors show up in the metrics.

Every scene is a pure function of ``(seed, index)`` (independent of call order) and a video is a
pure function of ``(seed, frame)``: the same street is rendered while the camera drives forward and
vehicles and pedestrians move, so consecutive frames are coherent. Everything is vectorised numpy /
OpenCV; a 256x512 scene renders in a few milliseconds. Torch-free.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgeseg.errors import EdgesegError

SYNTH_CLASSES: list[str] = [
    "sky",
    "building",
    "vegetation",
    "road",
    "sidewalk",
    "lane_marking",
    "vehicle",
    "pedestrian",
]
# Cityscapes-like colours so overlays look familiar.
SYNTH_PALETTE: list[tuple[int, int, int]] = [
    (70, 130, 180),
    (70, 70, 70),
    (107, 142, 35),
    (128, 64, 128),
    (244, 35, 232),
    (255, 255, 255),
    (0, 0, 142),
    (220, 20, 60),
]
SKY, BUILDING, VEGETATION, ROAD, SIDEWALK, MARKING, VEHICLE, PEDESTRIAN = range(len(SYNTH_CLASSES))

TRAIN_SEED = 0
"""Seed `edgeseg train --data synth` generates from."""
HELDOUT_SEED = 1_000_003
"""Seed of `open_dataset("synth:N")`: a different seed, so held-out scenes never repeat training ones."""

GENERATOR_VERSION = 1
"""Bumped whenever a seed's pixels change, so caches keyed on it (calibration stats) regenerate."""
MIN_SIDE = 16
_TRUNK = 250  # temporary mask label: vegetation pixels painted directly (trunks), not leaf-textured
_CYCLE = 320.0  # metres after which the street layout repeats along the driving direction
_Z_NEAR = 0.5  # metres: static things closer than this have left the view (they are off-screen by then)


# --------------------------------------------------------------------------------------------------
# Scene description: everything random is drawn here, rendering is then deterministic.
# --------------------------------------------------------------------------------------------------
@dataclass
class _Segment:
    start: float  # world Z where the building starts (within the cycle)
    length: float
    height: float  # 0 = a gap in the facade
    wall: np.ndarray  # RGB float32
    window: np.ndarray
    floor_h: float
    win_w: float
    win_period: float


@dataclass
class _Side:
    x: float  # lateral position of the facade plane (metres, signed)
    segments: list[_Segment]
    starts: np.ndarray  # segment starts, sorted, for searchsorted
    light: float  # sun-facing facades are brighter


@dataclass
class _Actor:
    kind: int  # VEHICLE, PEDESTRIAN or VEGETATION (tree)
    x: float
    z0: float  # world Z at t=0
    speed: float  # m/s along +Z (away from the camera) in world coordinates
    size: tuple[float, ...]
    colors: list[np.ndarray]
    phase: float = 0.0
    style: int = 0


@dataclass
class _Layout:
    horizon: float  # fraction of height
    vx: float  # vanishing point, fraction of width
    focal: float  # fraction of width
    cam_h: float
    cam_x: float
    cam_speed: float
    road_w: float
    lanes: int
    lane_w: float
    sw_left: float
    sw_right: float
    verge_left: float
    verge_right: float
    z_far: float
    sides: list[_Side]
    backdrop_tops: np.ndarray  # metres above ground per backdrop column block
    backdrop_kind: np.ndarray  # BUILDING / VEGETATION / SKY per block
    backdrop_colors: np.ndarray
    actors: list[_Actor]
    sky_top: np.ndarray
    sky_bottom: np.ndarray
    clouds: float
    road_rgb: np.ndarray
    sidewalk_rgb: np.ndarray
    grass_rgb: np.ndarray
    leaf_rgb: np.ndarray
    marking_rgb: np.ndarray
    marking_w: float
    dash_len: float
    dash_period: float
    edge_lines: bool
    tile: float
    shadow_x: float  # ground left of this lateral position is in shadow
    shadow_gain: float
    brightness: float
    tint: np.ndarray
    gamma: float
    noise: float
    blur: bool
    drift: float  # camera sway amplitude (metres) in videos
    extra: dict = field(default_factory=dict)


def _rgb(rng: np.random.Generator, base: tuple[float, float, float], jitter: float) -> np.ndarray:
    return np.clip(np.asarray(base, np.float32) + rng.uniform(-jitter, jitter, 3), 0, 255).astype(np.float32)


_WALLS = [(150, 150, 150), (185, 170, 140), (150, 80, 60), (215, 210, 200), (110, 90, 75), (95, 105, 120)]
_CARS = [(200, 30, 30), (30, 60, 160), (230, 230, 230), (25, 25, 25), (140, 140, 145), (40, 120, 60),
         (230, 180, 30), (90, 40, 110), (170, 110, 60)]  # fmt: skip
_GREENS = [(60, 110, 40), (85, 125, 45), (45, 90, 50), (110, 130, 55)]
_SIDEWALKS = [(175, 170, 160), (190, 160, 140), (150, 145, 140), (200, 190, 170)]
_SKIN = [(230, 190, 160), (200, 150, 110), (150, 100, 70), (95, 65, 45)]


def _make_side(rng: np.random.Generator, x: float, light: float) -> _Side:
    segs: list[_Segment] = []
    z = float(rng.uniform(0, 10))
    while z < _CYCLE:
        length = float(rng.uniform(8, 30))
        gap = rng.random() < 0.18
        segs.append(
            _Segment(
                start=z,
                length=length,
                height=0.0 if gap else float(rng.uniform(5, 28)),
                wall=_rgb(rng, _WALLS[rng.integers(len(_WALLS))], 25),
                window=_rgb(rng, (45, 55, 70), 25) * float(rng.choice([1.0, 1.0, 2.6])),
                floor_h=float(rng.uniform(2.8, 3.6)),
                win_w=float(rng.uniform(0.35, 0.7)),
                win_period=float(rng.uniform(2.0, 3.5)),
            )
        )
        z += length
    return _Side(x=x, segments=segs, starts=np.array([s.start for s in segs], np.float64), light=light)


def _make_layout(rng: np.random.Generator) -> _Layout:
    lanes = int(rng.integers(2, 5))
    lane_w = float(rng.uniform(3.0, 3.7))
    road_w = lanes * lane_w
    sw_l, sw_r = (float(v) for v in rng.uniform(1.5, 4.5, 2))
    verge_l, verge_r = (float(v) for v in rng.choice([0.0, 0.0, 1.0, 2.5, 4.0], 2) * rng.uniform(0.7, 1.3, 2))
    sun_left = rng.random() < 0.5
    sides = []
    for sign, sw, verge in ((-1, sw_l, verge_l), (1, sw_r, verge_r)):
        if rng.random() < 0.85:
            light = 1.15 if (sign < 0) == sun_left else 0.75
            sides.append(_make_side(rng, sign * (road_w / 2 + sw + verge + 0.5), light))
    z_far = float(rng.uniform(45, 90))
    n_blocks = 48
    kind = rng.choice([BUILDING, BUILDING, VEGETATION, SKY], n_blocks)
    tops = np.where(kind == VEGETATION, rng.uniform(4, 12, n_blocks), rng.uniform(6, 40, n_blocks))
    colors = np.stack([_rgb(rng, _WALLS[i], 20) for i in rng.integers(len(_WALLS), size=n_blocks)])
    cam_x = float(rng.uniform(-road_w / 2 + 1.2, road_w / 2 - 1.2))

    actors: list[_Actor] = []
    # Trees on the verges (or the sidewalk's outer edge when there is no verge).
    for sign, sw, verge in ((-1, sw_l, verge_l), (1, sw_r, verge_r)):
        n = int(rng.integers(0, 14))
        for _ in range(n):
            lateral = road_w / 2 + sw + (verge / 2 if verge > 0.5 else -0.6) + rng.uniform(-0.3, 0.3)
            crown = float(rng.uniform(1.2, 3.2))
            actors.append(
                _Actor(
                    kind=VEGETATION,
                    x=sign * lateral,
                    z0=float(rng.uniform(0, _CYCLE)),
                    speed=0.0,
                    size=(float(rng.uniform(1.8, 4.0)), crown, float(rng.uniform(0.15, 0.35))),
                    colors=[_rgb(rng, (80, 60, 40), 20)],
                    phase=float(rng.uniform(0, 2 * math.pi)),
                    style=int(rng.integers(2, 6)),  # crown blobs
                )
            )
    # Vehicles: one speed per lane so they never drive through each other.
    for lane in range(lanes):
        oncoming = lane < lanes // 2
        lane_speed = float(rng.uniform(3, 14)) * (-1 if oncoming else 1)
        n = int(rng.choice([0, 1, 1, 2, 2, 3]))
        zs = np.sort(rng.uniform(0, z_far + 10, n))
        for k, z in enumerate(zs):
            if k and z - zs[k - 1] < 9:
                continue
            big = rng.random() < 0.18
            w = float(rng.uniform(2.3, 2.6) if big else rng.uniform(1.65, 2.0))
            h = float(rng.uniform(2.6, 3.4) if big else rng.uniform(1.35, 1.65))
            actors.append(
                _Actor(
                    kind=VEHICLE,
                    x=-road_w / 2 + (lane + 0.5) * lane_w + float(rng.uniform(-0.3, 0.3)),
                    z0=float(z),
                    speed=lane_speed,
                    size=(w, h),
                    colors=[_rgb(rng, _CARS[rng.integers(len(_CARS))], 20), _rgb(rng, (35, 40, 50), 10)],
                    style=1 if big else 0,
                )
            )
    # Pedestrians on the sidewalks.
    for _ in range(int(rng.choice([0, 1, 2, 3, 4, 6]))):
        sign = -1 if rng.random() < 0.5 else 1
        sw = sw_l if sign < 0 else sw_r
        actors.append(
            _Actor(
                kind=PEDESTRIAN,
                x=sign * (road_w / 2 + float(rng.uniform(0.4, max(0.5, sw - 0.3)))),
                z0=float(rng.uniform(3, 35)),
                speed=float(rng.uniform(0.9, 1.6)) * (-1 if rng.random() < 0.5 else 1),
                size=(float(rng.uniform(1.5, 1.95)),),
                colors=[
                    _rgb(rng, _SKIN[rng.integers(len(_SKIN))], 10),
                    rng.uniform(20, 235, 3).astype(np.float32),
                    _rgb(rng, (50, 50, 70), 30),
                ],
                phase=float(rng.uniform(0, 2 * math.pi)),
            )
        )

    weather = rng.choice(["clear", "clear", "overcast", "dusk"])
    if weather == "clear":
        sky_top, sky_bottom = _rgb(rng, (60, 120, 210), 25), _rgb(rng, (170, 200, 235), 20)
    elif weather == "overcast":
        g = float(rng.uniform(150, 210))
        sky_top, sky_bottom = _rgb(rng, (g - 15, g - 10, g), 8), _rgb(rng, (g + 20, g + 20, g + 22), 8)
    else:
        sky_top, sky_bottom = _rgb(rng, (70, 80, 140), 20), _rgb(rng, (240, 160, 100), 25)
    road_grey = float(rng.uniform(55, 115))
    yellow = rng.random() < 0.3
    return _Layout(
        horizon=float(rng.uniform(0.36, 0.52)),
        vx=float(rng.uniform(0.38, 0.62)),
        focal=float(rng.uniform(0.6, 0.95)),
        cam_h=float(rng.uniform(1.2, 1.9)),
        cam_x=cam_x,
        cam_speed=float(rng.uniform(0, 9)),
        road_w=road_w,
        lanes=lanes,
        lane_w=lane_w,
        sw_left=sw_l,
        sw_right=sw_r,
        verge_left=verge_l,
        verge_right=verge_r,
        z_far=z_far,
        sides=sides,
        backdrop_tops=tops.astype(np.float32),
        backdrop_kind=kind,
        backdrop_colors=colors,
        actors=actors,
        sky_top=sky_top,
        sky_bottom=sky_bottom,
        clouds=float(rng.uniform(0, 0.7)),
        road_rgb=_rgb(rng, (road_grey, road_grey, road_grey + 5), 6),
        sidewalk_rgb=_rgb(rng, _SIDEWALKS[rng.integers(len(_SIDEWALKS))], 15),
        grass_rgb=_rgb(rng, _GREENS[rng.integers(len(_GREENS))], 15),
        leaf_rgb=_rgb(rng, _GREENS[rng.integers(len(_GREENS))], 15),
        marking_rgb=_rgb(rng, (225, 190, 40) if yellow else (235, 235, 230), 15),
        marking_w=float(rng.uniform(0.15, 0.3)),
        dash_len=float(rng.uniform(2.5, 4.5)),
        dash_period=float(rng.uniform(8, 13)),
        edge_lines=bool(rng.random() < 0.7),
        tile=float(rng.uniform(0.4, 0.9)),
        shadow_x=float(rng.uniform(-road_w, road_w)) if rng.random() < 0.5 else -1e9,
        shadow_gain=float(rng.uniform(0.45, 0.75)),
        brightness=float(rng.uniform(0.6, 1.3)),
        tint=rng.uniform(0.88, 1.12, 3).astype(np.float32),
        gamma=float(rng.uniform(0.8, 1.25)),
        noise=float(rng.uniform(1.5, 8)),
        blur=bool(rng.random() < 0.3),
        drift=float(rng.uniform(0.1, 0.5)),
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


def _paint_sky(fr: _Frame, lay: _Layout, rng: np.random.Generator) -> None:
    # Only rows above the ground's start can stay sky; everything below is repainted anyway.
    rows = int(min(fr.h, math.floor(fr.hy + fr.f * fr.cam_h / lay.z_far) + 2))
    t = np.clip(np.arange(rows, dtype=np.float32) / max(fr.hy, 1.0), 0, 1)[:, None, None]
    grad = lay.sky_top[None, None] * (1 - t) + lay.sky_bottom[None, None] * t
    clouds = _value_noise(rng, rows, fr.w, max(8.0, fr.w / 10))
    clouds = np.clip((clouds - (1 - lay.clouds)) * 3, 0, 1)[:, :, None] * np.float32(0.8)
    fr.img[:rows] = grad * (1 - clouds) + np.float32(235) * clouds


def _paint_backdrop(fr: _Frame, lay: _Layout, rng: np.random.Generator) -> None:
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


def _paint_ground(fr: _Frame, lay: _Layout, rng: np.random.Generator) -> None:
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
    mw = lay.marking_w / 2
    mark = np.zeros((rows, w), bool)
    dashed = np.mod(zw, lay.dash_period) < lay.dash_len
    for k in range(1, lay.lanes):
        mark |= (np.abs(x - (-half + k * lay.lane_w)) < mw) & dashed
    if lay.edge_lines:
        mark |= np.abs(ax - (half - 0.35)) < mw
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


def _paint_facades(fr: _Frame, lay: _Layout, rng: np.random.Generator) -> None:
    xs = np.arange(fr.w, dtype=np.float32) + 0.5
    ys = np.arange(fr.h, dtype=np.float32)[:, None] + 0.5
    for side in lay.sides:
        rel = side.x - fr.cam_x
        dx = xs - fr.vx
        with np.errstate(divide="ignore", invalid="ignore"):
            z = fr.f * rel / dx
        cols = np.nonzero((np.sign(dx) == np.sign(rel)) & (z > 0.3) & (z < lay.z_far))[0]
        if cols.size == 0:
            continue
        zc = z[cols]
        zw = np.mod(zc + fr.cam_z, _CYCLE)
        idx = np.clip(np.searchsorted(side.starts, zw, side="right") - 1, 0, len(side.segments) - 1)
        segs = side.segments
        height = np.array([segs[i].height for i in idx], np.float32)
        # A building cut by the far wall would leave a sliver; show it only once wholly in range.
        seg_end = side.starts[idx] + np.array([segs[i].length for i in idx])
        height[(seg_end - zw + zc) > lay.z_far] = 0
        wall = np.stack([segs[i].wall for i in idx])
        window = np.stack([segs[i].window for i in idx])
        floor_h = np.array([segs[i].floor_h for i in idx], np.float32)
        win_w = np.array([segs[i].win_w for i in idx], np.float32)
        period = np.array([segs[i].win_period for i in idx], np.float32)
        local = zw - side.starts[idx].astype(np.float32)
        top = fr.hy - fr.f * (height - fr.cam_h) / zc
        bottom = fr.hy + fr.f * fr.cam_h / zc
        inside = (ys >= top[None]) & (ys < bottom[None]) & (height[None] > 0)
        if not inside.any():
            continue
        world_y = fr.cam_h - (ys - fr.hy) * zc[None] / fr.f  # (H, ncols)
        px_floor = fr.f * floor_h / zc
        fade = np.clip((np.minimum(px_floor, fr.f * period / zc) - 4) / 6, 0, 1)[None]
        win = (
            (np.mod(world_y - 0.9, floor_h[None]) < floor_h[None] * 0.55)
            & (np.mod(local, period) < period * win_w)[None]
            & (world_y > 2.5)
            & (world_y < height[None] - 0.8)
        )
        colw = wall[None] * (1 - fade[..., None] * win[..., None]) + window[None] * (
            fade[..., None] * win[..., None]
        )
        colw = colw * side.light
        sub_img = fr.img[:, cols]
        sub_mask = fr.mask[:, cols]
        sub_img[inside] = colw[inside]
        sub_mask[inside] = BUILDING
        fr.img[:, cols] = sub_img
        fr.mask[:, cols] = sub_mask


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


def _draw_tree(fr: _Frame, a: _Actor, z: float) -> None:
    trunk_h, crown, trunk_w = a.size
    _box(fr, a.x - trunk_w / 2, a.x + trunk_w / 2, 0, trunk_h + crown * 0.5, z, _TRUNK, a.colors[0])
    # A few overlapping blobs make irregular crowns of different sizes.
    for k in range(a.style):
        ang = a.phase + k * 2.4
        ox, oy = math.cos(ang) * crown * 0.45, math.sin(ang) * crown * 0.35
        r = crown * (0.55 + 0.12 * ((k * 7) % 4))
        _ellipse(fr, a.x + ox, trunk_h + crown * 0.8 + oy, z, r, r * 0.9, VEGETATION, None)


def _draw_vehicle(fr: _Frame, a: _Actor, z: float) -> None:
    w, h = a.size
    body, glass = a.colors
    x = a.x
    dark = np.array([20, 20, 22], np.float32)
    # Shadow on the ground (image only), then wheels, body, cabin.
    u, v = fr.project(x, 0, z)
    axes = (max(1, round(fr.f * w * 0.6 / z)), max(1, round(fr.f * 0.25 / z)))
    roi = fr.img
    cv2.ellipse(roi, (round(u), round(v)), axes, 0, 0, 360, (0, 0, 0), -1)
    for sx in (-1, 1):
        _box(fr, x + sx * w / 2 - (0.32 if sx > 0 else 0), x + sx * w / 2 + (0.32 if sx < 0 else 0) - 0.0,
             0, 0.5, z, VEHICLE, dark)  # fmt: skip
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
    lamp = np.array([255, 60, 40] if a.speed > 0 else [250, 245, 210], np.float32)
    for sx in (-1, 1):
        cx = x + sx * (w / 2 - 0.25)
        _box(fr, cx - 0.15, cx + 0.15, h * 0.42 if a.style == 0 else 0.65, (h * 0.52) if a.style == 0 else 0.85,
             z, VEHICLE, lamp)  # fmt: skip
    _box(fr, x - 0.25, x + 0.25, 0.38, 0.5, z, VEHICLE, np.array([235, 235, 235], np.float32))


def _draw_pedestrian(fr: _Frame, a: _Actor, z: float, t: float) -> None:
    (hp,) = a.size
    skin, shirt, pants = a.colors
    x = a.x
    stride = 0.22 * math.sin(a.phase + t * 2 * math.pi * 1.6 * abs(a.speed) / 1.3)
    hip, shoulder = hp * 0.5, hp * 0.82
    for s in (-1, 1):  # legs: the stride shows as a lateral spread in this (frontal) view
        fx = x + s * (0.09 + stride * 0.5 * s)
        _poly(fr, [fr.project(x + s * 0.02, hip, z), fr.project(x + s * 0.16, hip, z),
                   fr.project(fx + s * 0.07, 0, z), fr.project(fx - s * 0.05, 0, z)], PEDESTRIAN, pants)  # fmt: skip
    _poly(fr, [fr.project(x - 0.19, hip, z), fr.project(x + 0.19, hip, z),
               fr.project(x + 0.22, shoulder, z), fr.project(x - 0.22, shoulder, z)], PEDESTRIAN, shirt)  # fmt: skip
    for s in (-1, 1):
        swing = -s * stride * 0.6
        _poly(fr, [fr.project(x + s * 0.2, shoulder, z), fr.project(x + s * 0.28, shoulder - 0.05, z),
                   fr.project(x + s * 0.27 + swing, hip - 0.05, z), fr.project(x + s * 0.2 + swing, hip - 0.05, z)],
              PEDESTRIAN, shirt * 0.85)  # fmt: skip
    _ellipse(fr, x, hp - 0.12, z, 0.1, 0.12, PEDESTRIAN, skin)


def _paint_actors(fr: _Frame, lay: _Layout, t: float) -> None:
    """Trees, vehicles and pedestrians, far to near so nearer ones occlude."""
    placed: list[tuple[float, _Actor]] = []
    for a in lay.actors:
        if a.kind == VEGETATION:
            z = np.mod(a.z0 - fr.cam_z - _Z_NEAR, _CYCLE) + _Z_NEAR
        else:
            # Moving actors bounce between a near and a far depth (a triangle wave) instead of
            # wrapping, so nothing pops into view: they turn around hidden behind the far wall or,
            # at the near end, at a distance where they would otherwise fill the frame.
            own_lane = a.kind == VEHICLE and abs(a.x - fr.cam_x) < lay.lane_w * 0.75
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


def _finish(fr: _Frame, lay: _Layout, rng: np.random.Generator, light: float) -> np.ndarray:
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
    fr.mask[fr.mask == _TRUNK] = VEGETATION
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


class SceneGenerator:
    """Deterministic road scenes and videos with per-pixel labels (see module docstring)."""

    classes: list[str] = SYNTH_CLASSES
    palette: list[tuple[int, int, int]] = SYNTH_PALETTE

    def __init__(self, height: int, width: int, seed: int = 0) -> None:
        if int(height) < MIN_SIDE or int(width) < MIN_SIDE:
            raise EdgesegError(
                f"synthetic scenes need at least {MIN_SIDE}x{MIN_SIDE} pixels, got {height}x{width}"
            )
        if int(seed) < 0:
            raise EdgesegError(f"seed must be >= 0, got {seed}")
        self.height, self.width, self.seed = int(height), int(width), int(seed)

    def _rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, *key])

    def _render(
        self, lay: _Layout, t: float, cam_z: float, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        h, w = self.height, self.width
        sway = lay.drift * math.sin(t * 0.7)
        yaw = 0.015 * math.sin(t * 0.45 + 1.0)
        fr = _Frame(
            h=h,
            w=w,
            f=lay.focal * w,
            hy=lay.horizon * h,
            vx=(lay.vx + yaw) * w,
            cam_x=lay.cam_x + sway,
            cam_z=cam_z,
            cam_h=lay.cam_h,
            img=np.empty((h, w, 3), np.float32),
            mask=np.zeros((h, w), np.uint8),
        )
        _paint_sky(fr, lay, rng)
        _paint_backdrop(fr, lay, rng)
        _paint_ground(fr, lay, rng)
        _paint_facades(fr, lay, rng)
        _paint_actors(fr, lay, t)
        light = 1.0 + 0.08 * math.sin(t * 0.3)  # slow cloud-shadow breathing in videos
        return _finish(fr, lay, rng, light), fr.mask

    def scene(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Scene `index`: (RGB uint8 HxWx3, class ids uint8 HxW); a pure function of (seed, index)."""
        if int(index) < 0:
            raise EdgesegError(f"scene index must be >= 0, got {index}")
        rng = self._rng(0, int(index))
        lay = _make_layout(rng)
        cam_z = float(rng.uniform(0, _CYCLE))
        t = float(rng.uniform(0, 60))  # scatters the moving actors; the street itself follows cam_z
        return self._render(lay, t, cam_z, rng)

    def video(
        self, num_frames: int, start: int = 0, fps: float = 15.0
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Frames `start .. start+num_frames-1` of this seed's drive: one street, moving camera and actors."""
        if int(num_frames) < 0 or int(start) < 0:
            raise EdgesegError("num_frames and start must be >= 0")
        if fps <= 0:
            raise EdgesegError(f"fps must be > 0, got {fps}")
        lay = _make_layout(self._rng(1))
        for k in range(int(start), int(start) + int(num_frames)):
            t = k / fps
            yield self._render(lay, t, lay.cam_speed * t, self._rng(2, k))


def write_dataset(out_dir: str | Path, num_images: int, height: int, width: int, seed: int = TRAIN_SEED,
                  progress=None) -> Path:  # fmt: skip
    """Write scenes 0..num_images-1 in the plain-folder layout (images/*.png, masks/*.png, classes.json)."""
    from edgeseg.data.io import write_image, write_mask
    from edgeseg.data.plain import write_classes_file

    if int(num_images) < 1:
        raise EdgesegError(f"num_images must be >= 1, got {num_images}")
    out = Path(out_dir)
    gen = SceneGenerator(height, width, seed)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    write_classes_file(out, SYNTH_CLASSES, SYNTH_PALETTE)
    for i in range(int(num_images)):
        rgb, mask = gen.scene(i)
        stem = f"scene_{i:06d}"
        write_image(out / "images" / f"{stem}.png", rgb)
        write_mask(out / "masks" / f"{stem}.png", mask)
        if progress is not None:
            progress(i + 1)
    return out


# OpenCV builds differ in their encoders; these FourCCs are written *and* read back by the
# opencv-python wheels (H.264 'avc1' is often missing, so it is not used).
VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "VP80"}


def write_video(out_path: str | Path, num_frames: int, height: int, width: int, seed: int = HELDOUT_SEED,
                fps: float = 15.0, progress=None) -> tuple[Path, Path]:  # fmt: skip
    """Write a drive as a video plus exact ground truth ``masks/<video stem>_000000.png``, one per frame.

    Returns (video path, masks folder). The video is lossy, the masks are exact; frame k of the file
    pairs with mask k, named as `edgeseg run --labels` pairs video frames (``<stem>_<index:06d>``).
    The masks folder also gets a classes.json, so it reads like a dataset's masks.
    """
    from edgeseg.atomic import atomic_path
    from edgeseg.data.io import write_mask
    from edgeseg.data.plain import write_classes_file

    out = Path(out_path)
    codec = VIDEO_CODECS.get(out.suffix.lower())
    if codec is None:
        raise EdgesegError(
            f"unsupported video suffix {out.suffix!r} for {out}; use one of {', '.join(VIDEO_CODECS)}"
        )
    if int(num_frames) < 1:
        raise EdgesegError(f"num_frames must be >= 1, got {num_frames}")
    gen = SceneGenerator(height, width, seed)
    masks_dir = video_masks_dir(out)
    masks_dir.mkdir(parents=True, exist_ok=True)
    write_classes_file(masks_dir, SYNTH_CLASSES, SYNTH_PALETTE)
    with atomic_path(out) as tmp:
        # VideoWriter picks the container from the suffix, so the temporary name must keep it.
        tmp_video = tmp.with_name(tmp.name + out.suffix)
        writer = cv2.VideoWriter(
            str(tmp_video), cv2.VideoWriter_fourcc(*codec), float(fps), (int(width), int(height))
        )
        if not writer.isOpened():
            raise EdgesegError(f"this OpenCV build cannot write {codec!r} video to {out}")
        try:
            for k, (rgb, mask) in enumerate(gen.video(int(num_frames), fps=fps)):
                writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                write_mask(masks_dir / f"{out.stem}_{k:06d}.png", mask)
                if progress is not None:
                    progress(k + 1)
        finally:
            writer.release()
        if not tmp_video.exists() or tmp_video.stat().st_size == 0:
            raise EdgesegError(f"OpenCV wrote no video data for {out}")
        tmp_video.replace(tmp)
    return out, masks_dir


def video_masks_dir(video_path: str | Path) -> Path:
    """Where `write_video` puts the ground-truth masks of `video_path` (a `masks/` folder beside it)."""
    return Path(video_path).with_name("masks")
