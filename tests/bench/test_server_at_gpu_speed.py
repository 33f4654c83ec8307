"""The pure parts of bench/server_at_gpu_speed.py and its GPU stand-in (bench/gpu_standin.py):
the time model says what its documentation says, the images are real-size, distinct and
compress like pictures, and the server's PNG encoding keeps them lossless. No timings are
asserted: the benchmark measures, it never fails on a number."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from bench.gpu_standin import ENV, GpuTime, StandInRunner, StandInSettings, photo_like, runner_from
from bench.server_at_gpu_speed import idle_gaps, read_calls
from inference.engine.generate import BatchKey, GenerationInterrupted, ImageTask
from inference.engine.samplers import resolve
from inference.imaging import PARAMETERS_CHUNK, encode_png


def _key(steps: int = 2, size: int = 64) -> BatchKey:
    return BatchKey(model="stand-in", kind="txt2img", width=size, height=size, steps=steps, sampler=resolve(None, None),
                    cfg_scale=7.0)


def test_batch_one_takes_steps_over_it_per_s_and_batch_four_the_scaling_factor_times_that():
    model = GpuTime(it_per_s=100, batch_scaling=2.2, max_batch_size=8)
    assert model.call_seconds(1, 20) == pytest.approx(0.2)
    assert model.call_seconds(4, 20) == pytest.approx(0.44)
    # On the line through those two points: batch 2 is 1.4x, batch 8 is 3.8x batch 1.
    assert model.call_seconds(2, 20) == pytest.approx(0.28)
    assert model.call_seconds(8, 20) == pytest.approx(0.76)
    assert model.images_per_s(4, 20) == pytest.approx(4 / 0.44)
    # Twice the pixels, twice the time.
    assert model.call_seconds(1, 20, 1024, 512) == pytest.approx(0.4)


def test_a_batch_is_timed_at_its_padded_bucket_as_the_compiled_path_runs_it():
    model = GpuTime(it_per_s=100, batch_scaling=2.2, max_batch_size=8)
    assert model.padded(3) == 4 and model.padded(5) == 8
    assert model.call_seconds(3, 20) == model.call_seconds(4, 20)
    assert model.call_seconds(5, 20) == model.call_seconds(8, 20)
    assert GpuTime(max_batch_size=6).padded(5) == 6  # batch_buckets(6) = (1, 2, 4, 6)


@pytest.mark.parametrize(("field", "values"), [("it_per_s", {"it_per_s": 0}), ("batch_scaling", {"batch_scaling": 0.5})])
def test_a_time_model_that_cannot_be_is_refused_naming_the_field(field, values):
    with pytest.raises(ValueError, match=field):
        GpuTime(**values)


def test_photo_like_images_are_512_rgb_and_compress_like_pictures_not_noise_or_flat_colour():
    image = photo_like(0)
    assert image.size == (512, 512) and image.mode == "RGB"
    raw = 512 * 512 * 3
    for level in (1, 6):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=level)
        # SD 1.5's 512x512 PNGs are about 300 to 450 KB (raw RGB is 786 KB).
        assert 300_000 < len(buffer.getvalue()) < 0.7 * raw, level
    assert np.asarray(photo_like(0)).tobytes() == np.asarray(photo_like(0)).tobytes()  # seeded
    assert np.asarray(photo_like(1)).tobytes() != np.asarray(image).tobytes()


def test_the_runner_returns_one_distinct_image_per_task_and_reports_every_step(tmp_path):
    runner = StandInRunner(GpuTime(it_per_s=1e6), pool=4, calls_log=tmp_path / "calls.log")
    steps: list[tuple[int, int]] = []
    tasks = [ImageTask(prompt="", negative_prompt="", seed=i) for i in range(3)]
    images = runner(_key(steps=3), tasks, lambda step, total: steps.append((step, total)) or False)
    assert [image.size for image in images] == [(64, 64)] * 3
    assert len({image.tobytes() for image in images}) == 3
    assert steps == [(1, 3), (2, 3), (3, 3)]
    calls = read_calls(tmp_path / "calls.log", 0)
    assert [size for size, _, _ in calls] == [3]
    # The next call goes on through the pool: its first image is the pool's fourth.
    following = runner(_key(steps=3), tasks[:1])
    assert following[0].tobytes() not in {image.tobytes() for image in images}
    with pytest.raises(ValueError, match="pool"):
        runner(_key(), [ImageTask(prompt="", negative_prompt="", seed=i) for i in range(5)])


def test_an_interrupt_at_a_step_stops_the_call():
    runner = StandInRunner(GpuTime(it_per_s=1e6), pool=2)
    with pytest.raises(GenerationInterrupted):
        runner(_key(steps=5), [ImageTask(prompt="", negative_prompt="", seed=0)], lambda step, total: step == 2)


def test_the_stand_in_images_stay_lossless_through_the_servers_png_encoding():
    image = photo_like(3, 128, 128)
    decoded = Image.open(io.BytesIO(base64.b64decode(encode_png(image, "a cat\nSteps: 20"))))
    assert decoded.text[PARAMETERS_CHUNK] == "a cat\nSteps: 20"
    assert np.asarray(decoded.convert("RGB")).tobytes() == np.asarray(image).tobytes()


def test_settings_travel_to_the_server_process_through_the_environment(tmp_path):
    settings = StandInSettings(it_per_s=50, batch_scaling=3.0, max_batch_size=8, state_dir=str(tmp_path),
                               png_compress_level=1)
    again = StandInSettings.from_env({ENV: settings.to_env()})
    assert again == settings
    runner = runner_from(again)
    assert runner.time_model == GpuTime(50, 3.0, 8)
    assert runner.calls_log == tmp_path / "calls.log"
    with pytest.raises(SystemExit, match=ENV):
        StandInSettings.from_env({ENV: json.dumps({"it_per_s": 1, "unknown": 2})})
    with pytest.raises(SystemExit, match=ENV):
        StandInSettings.from_env({})


def test_idle_gaps_are_the_waits_between_one_calls_end_and_the_next_calls_start(tmp_path):
    log = tmp_path / "calls.log"
    log.write_text("4 0.440000 10.000000\n4 0.440000 10.450000\n2 0.280000 10.900000\n")
    calls = read_calls(log, 0)
    assert [size for size, _, _ in calls] == [4, 4, 2]
    assert idle_gaps(calls) == pytest.approx([0.01, 0.01])
    assert read_calls(log, 2) == [(2, 0.28, 10.9)]
    assert read_calls(tmp_path / "missing.log", 0) == []
