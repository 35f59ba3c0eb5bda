import pytest
import torch
from policy_testlib import tiny_batch, tiny_config

from mmrobot.core.errors import ConfigError
from mmrobot.policies import FusionPolicyModel

MODES = [(f, d) for f in ("mid", "early", "late") for d in ("parallel", "autoregressive")]
STREAMS = ["cam_a", "cam_b", "lidar", "ft", "joints"]


def build(fusion="mid", decoding="parallel", seed=0, **kw):
    torch.manual_seed(seed)
    return FusionPolicyModel(tiny_config(fusion, decoding, **kw)).eval()


@pytest.mark.parametrize(("fusion", "decoding"), MODES)
def test_output_shapes(fusion, decoding):
    model = build(fusion, decoding)
    batch = tiny_batch(model.config, 3)
    ac = model.config.action
    targets = torch.randint(0, ac.bins, (3, ac.horizon, ac.dim))
    logits = model(batch, targets)
    assert logits.shape == (3, ac.horizon, ac.dim, ac.bins)
    assert torch.isfinite(logits).all()
    tokens, gen_logits = model.generate(batch)
    assert tokens.shape == (3, ac.horizon, ac.dim) and tokens.dtype == torch.long
    assert gen_logits.shape == logits.shape
    assert int(tokens.min()) >= 0 and int(tokens.max()) < ac.bins
    assert torch.equal(tokens, gen_logits.argmax(-1))


def test_default_model_size():
    from pathlib import Path

    from mmrobot.policies import load_policy_config

    cfg = load_policy_config(Path(__file__).resolve().parents[2] / "policies" / "default.toml")
    model = FusionPolicyModel(cfg)
    n = model.num_parameters(deployed=True)  # what act() and the ONNX export carry
    assert 300_000 <= n <= 2_000_000
    assert model.num_parameters() > n  # the training-only heads come on top


@pytest.mark.parametrize("fusion", ["mid", "early", "late"])
@pytest.mark.parametrize("stream", STREAMS)
def test_masked_stream_does_not_change_output(fusion, stream):
    model = build(fusion)
    batch = tiny_batch(model.config, 2)
    batch[f"{stream}__valid"][0] = False
    ref = model(batch)
    # Perturb everything of the masked stream: values (even NaN), age, and its own embedding.
    pert = dict(batch)
    v = batch[stream].clone()
    if v.dtype == torch.uint8:
        v.fill_(7)
    else:
        v[0] = float("nan")  # masked sample: not even NaN may leak
        v[1] = v[1] * 2 + 1  # valid sample: a finite change
    pert[stream] = v
    pert[f"{stream}__age_ns"] = batch[f"{stream}__age_ns"] + 12345
    i = [s.name for s in model.streams].index(stream)
    with torch.no_grad():
        model.stream_embedding[i] += torch.linspace(-3, 3, model.width)
    out = model(pert)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[0], ref[0], rtol=0, atol=1e-5)
    # The same perturbation changes sample 1, where the stream is valid: the check has teeth.
    assert (out[1] - ref[1]).abs().max() > 1e-3


def test_lidar_scan_without_returns_is_masked():
    model = build()
    batch = tiny_batch(model.config, 2)
    batch["lidar"][0] = 0.0  # no ray returned: every group centre invalid
    ref = model(batch)
    with torch.no_grad():
        model.stream_embedding[2] += torch.linspace(-3, 3, model.width)
    torch.testing.assert_close(model(batch)[0], ref[0], rtol=0, atol=1e-5)


def test_camera_order_matters_only_through_camera_embedding():
    model = build("mid")
    batch = tiny_batch(model.config, 2)
    ref = model(batch)
    swapped = dict(batch)
    for suffix in ("", "__valid", "__age_ns"):
        swapped["cam_a" + suffix], swapped["cam_b" + suffix] = (
            batch["cam_b" + suffix],
            batch["cam_a" + suffix],
        )
    differs = model(swapped)
    assert (differs - ref).abs().max() > 1e-3  # the camera embedding tells the cameras apart
    with torch.no_grad():
        model.stream_embedding[[0, 1]] = model.stream_embedding[[1, 0]].clone()
    torch.testing.assert_close(model(swapped), ref, rtol=0, atol=1e-5)


def _camera_tokens(model, batch):
    with torch.no_grad():
        tokens, _, _, _, _ = model.encode(batch)
    start = model.instruction_encoder.n_tokens  # camera tokens follow the instruction's
    return tokens[:, start : start + 2 * model.image_encoder.n_tokens]


@pytest.mark.parametrize(
    ("film", "pixel_film"), [(False, False), (True, False), (True, True), (False, True)]
)
def test_film_makes_camera_tokens_depend_on_the_instruction(film, pixel_film):
    torch.manual_seed(0)
    camera = {"film": film, "pixel_film": pixel_film}
    model = FusionPolicyModel(tiny_config("mid", camera=camera)).eval()
    # FiLM starts as the identity; give it weights, as training would. With pixel_film the
    # global FiLM (if any) stays at zero, so the per-pixel form alone carries the instruction.
    if film and not pixel_film:
        for lin in model.image_encoder.film:
            torch.nn.init.normal_(lin.weight, std=0.5)
    if pixel_film:
        for layer in model.image_encoder.pixel_film:
            torch.nn.init.normal_(layer.value.weight, std=0.5)
    red = tiny_batch(model.config, 2, instruction="touch the red block")
    blue = tiny_batch(model.config, 2, instruction="touch the blue block")  # same images
    gap = (_camera_tokens(model, red) - _camera_tokens(model, blue)).abs().max().item()
    if film or pixel_film:
        assert gap > 1e-2
    else:
        assert gap == 0.0


def test_instruction_attention_ignores_padding_tokens():
    """With language.layers, a valid instruction token attends to valid tokens only: what
    the encoder leaves in the padding positions never reaches the camera condition."""
    torch.manual_seed(0)
    model = FusionPolicyModel(tiny_config("mid", language={"layers": 1})).eval()
    batch = tiny_batch(model.config, 2, instruction="lift it")  # shorter than max_len
    _, _, _, summary, _ = model.encode(batch)

    def noisy_padding(module, inputs, output):
        tokens, valid = output
        return tokens + 5.0 * torch.randn_like(tokens) * (~valid).unsqueeze(-1), valid

    hook = model.instruction_encoder.register_forward_hook(noisy_padding)
    _, _, _, noisy, _ = model.encode(batch)
    hook.remove()
    width = model.width  # the summary starts with the pooled instruction
    assert not bool(batch["instruction_mask"].all())
    torch.testing.assert_close(noisy[:, :width], summary[:, :width], rtol=0, atol=1e-5)


def test_film_starts_as_the_unconditioned_stem():
    torch.manual_seed(0)
    plain = FusionPolicyModel(tiny_config("mid")).eval()
    torch.manual_seed(0)
    film = FusionPolicyModel(tiny_config("mid", camera={"film": True})).eval()
    film.load_state_dict(plain.state_dict(), strict=False)  # all but the (zero) FiLM layers
    batch = tiny_batch(plain.config, 2)
    torch.testing.assert_close(film(batch), plain(batch), rtol=0, atol=1e-6)


def _pixel_film_encoder(pixel_film: bool):
    from mmrobot.policies.encoders import ImageEncoder

    torch.manual_seed(0)
    return ImageEncoder((16, 16, 3), (8, 8), 2, 16, film=True, pixel_film=pixel_film).eval()


def test_pixel_film_starts_as_the_identity_and_ignores_padding():
    images = torch.randint(0, 256, (2, 16, 16, 3), dtype=torch.uint8)
    cond, tokens = torch.randn(2, 16), torch.randn(2, 5, 16)
    valid = torch.tensor([[True, True, True, False, False]] * 2)
    plain, pixel = _pixel_film_encoder(False), _pixel_film_encoder(True)
    pixel.load_state_dict(plain.state_dict(), strict=False)  # all but the per-pixel layers
    for lin in plain.film:  # FiLM itself given weights, as training would
        torch.nn.init.normal_(lin.weight, std=0.5)
    pixel.film.load_state_dict(plain.film.state_dict())
    with torch.no_grad():
        ref = plain(images, cond)
        torch.testing.assert_close(pixel(images, cond, (tokens, valid)), ref, rtol=0, atol=1e-6)
        for layer in pixel.pixel_film:
            torch.nn.init.normal_(layer.value.weight, std=0.5)
        out = pixel(images, cond, (tokens, valid))
        noisy = torch.where(valid[..., None], tokens, tokens + 5.0 * torch.randn_like(tokens))
        torch.testing.assert_close(pixel(images, cond, (noisy, valid)), out, rtol=0, atol=1e-6)
    assert (out - ref).abs().max().item() > 1e-2
    with pytest.raises(ValueError, match="instruction tokens"):
        pixel(images, cond)


@pytest.mark.parametrize("start", [0, 1])
def test_pixel_film_from_leaves_the_earlier_stem_layers_unconditioned(start):
    from mmrobot.policies.encoders import ImageEncoder

    torch.manual_seed(0)
    enc = ImageEncoder((16, 16, 3), (8, 12), 2, 16, pixel_film=True, pixel_film_from=start)
    assert [layer.value.out_features for layer in enc.pixel_film] == [16, 24][start:]
    for layer in enc.pixel_film:
        torch.nn.init.normal_(layer.value.weight, std=0.5)
    first = []  # the first stem layer's activations (after its GELU)
    enc.stem[1].register_forward_hook(lambda mod, inp, out: first.append(out))
    images = torch.randint(0, 256, (1, 16, 16, 3), dtype=torch.uint8)
    valid = torch.ones(1, 4, dtype=torch.bool)
    with torch.no_grad():
        a = enc(images, None, (torch.randn(1, 4, 16), valid))
        b = enc(images, None, (torch.randn(1, 4, 16), valid))
    assert (a - b).abs().max().item() > 1e-3  # the instruction still reaches the tokens
    assert torch.equal(first[0], first[1]) == (start == 1)


def test_pixel_film_from_past_the_stem_is_a_config_error():
    from mmrobot.policies.config import CameraConfig

    with pytest.raises(ConfigError, match=r"pixel_film_from = 2 is past the stem's last layer"):
        CameraConfig(stem_channels=(16, 32), pixel_film=True, pixel_film_from=2)


def test_pixel_film_modulates_each_pixel_by_what_it_attends_to():
    """Global FiLM maps a channel by one affine map, x * (1 + gamma) + beta, at every pixel;
    the per-pixel form takes (gamma, beta) from the tokens each pixel attends to, so three
    pixels of one channel no longer lie on one line."""
    from mmrobot.policies.encoders import _PixelFiLM

    torch.manual_seed(0)
    layer = _PixelFiLM(4, 8, dim=4)
    torch.nn.init.normal_(layer.value.weight, std=1.0)
    x = torch.tensor([1.0, -1.0, 2.0]).view(1, 1, 1, 3).repeat(1, 4, 1, 1)
    tokens, valid = torch.randn(1, 3, 8), torch.ones(1, 3, dtype=torch.bool)
    with torch.no_grad():
        layer.query.weight.mul_(20.0)  # sharp attention: the pixels pick different tokens
        out = layer(x, tokens, valid)[0, :, 0]  # (channels, 3 pixels)
    slope_a = (out[:, 1] - out[:, 0]) / (x[0, :, 0, 1] - x[0, :, 0, 0])
    slope_b = (out[:, 2] - out[:, 0]) / (x[0, :, 0, 2] - x[0, :, 0, 0])
    assert (slope_a - slope_b).abs().max().item() > 1e-2


def test_pixel_film_folded_query_equals_the_query_at_every_pixel():
    """The layer folds W_q into the token keys; the scores must be those of the query
    convolution applied at each pixel."""
    from mmrobot.policies.encoders import _PixelFiLM

    torch.manual_seed(0)
    layer = _PixelFiLM(6, 16, dim=8)
    torch.nn.init.normal_(layer.value.weight, std=0.5)
    torch.nn.init.normal_(layer.query.bias, std=0.5)
    x, tokens = torch.randn(2, 6, 5, 4), torch.randn(2, 7, 16)
    valid = torch.rand(2, 7) > 0.3
    valid[:, 0] = True
    with torch.no_grad():
        q = layer.query(x).flatten(2)  # (B, dim, H * W): the unfolded query
        scores = torch.einsum("btd,bdp->btp", layer.key(tokens), q) * layer.scale
        scores = scores.masked_fill(~valid[:, :, None], -1e9).softmax(1)
        film = torch.einsum("btc,btp->bcp", layer.value(tokens), scores).reshape(2, 12, 5, 4)
        gamma, beta = film.chunk(2, dim=1)
        torch.testing.assert_close(layer(x, tokens, valid), x * (1 + gamma) + beta)


def test_camera_heads_read_only_the_cameras_and_the_instruction():
    from mmrobot.train.step import aux_loss

    training = {"aux_weights": {"block_rel": 1.0, "held": 1.0}, "encoder_aux": True}
    model = FusionPolicyModel(tiny_config("mid", training=training)).eval()
    batch = tiny_batch(model.config, 2)
    _, aux = model(batch, with_aux=True)
    assert set(aux) == {"block_rel", "held", "camera/block_rel"}  # positions only
    moved = dict(batch, joints=batch["joints"] + 1.0, lidar=batch["lidar"] * 2.0)
    _, aux_moved = model(moved, with_aux=True)
    assert torch.equal(aux_moved["camera/block_rel"], aux["camera/block_rel"])
    assert not torch.equal(aux_moved["block_rel"], aux["block_rel"])
    _, aux_seen = model(dict(batch, cam_a=255 - batch["cam_a"]), with_aux=True)
    assert not torch.equal(aux_seen["camera/block_rel"], aux["camera/block_rel"])
    # the camera head's target is the position in the base frame: relative + TCP
    rel, tcp = torch.full((2, 3), 0.1), torch.full((2, 3), 0.3)
    pred = {"camera/block_rel": torch.full((2, 3), 40.0)}  # cm
    loss = aux_loss(pred, {"block_rel": rel, "tcp": tcp})["camera/block_rel"]
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_block_yaw_head_is_fused_only_and_scored_on_the_unit_circle():
    from mmrobot.train.step import aux_loss

    training = {"aux_weights": {"block_rel": 1.0, "block_yaw": 1.0}, "encoder_aux": True}
    model = FusionPolicyModel(tiny_config("mid", training=training)).eval()
    _, aux = model(tiny_batch(model.config, 2), with_aux=True)
    assert set(aux) == {"block_rel", "block_yaw", "camera/block_rel"}  # no camera yaw head
    assert aux["block_yaw"].shape == (2, 2)
    target = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    exact = aux_loss({"block_yaw": target.clone()}, {"block_yaw": target})["block_yaw"]
    assert exact.item() == 0.0
    opposite = aux_loss({"block_yaw": -target}, {"block_yaw": target})["block_yaw"]
    assert opposite.item() == pytest.approx(2.0)  # (2^2 + 0) / 2 per sample
    # a NaN target (a push sample: no turn to the faces) is left out, its gradient 0
    pred = (-target).requires_grad_()
    unknown = torch.tensor([[0.0, 1.0], [float("nan"), float("nan")]])
    left_out = aux_loss({"block_yaw": pred}, {"block_yaw": unknown})["block_yaw"]
    assert left_out.item() == pytest.approx(2.0)  # the first sample's error alone
    left_out.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad[1].abs().sum() == 0


def test_camera_yaw_head_reads_the_cameras_and_is_scored_against_the_turn_itself():
    from mmrobot.policies.config import ConfigError
    from mmrobot.train.step import aux_loss

    training = {"aux_weights": {"block_rel": 1.0}, "encoder_aux": True, "camera_yaw": 3.0}
    model = FusionPolicyModel(tiny_config("mid", training=training)).eval()
    batch = tiny_batch(model.config, 2)
    _, aux = model(batch, with_aux=True)
    # the fused block_yaw head needs its own weight; the camera one needs camera_yaw only
    assert set(aux) == {"block_rel", "camera/block_rel", "camera/block_yaw"}
    assert model.camera_position_heads == ["block_rel"]  # the turn has no cm offset
    moved = dict(batch, joints=batch["joints"] + 1.0)
    _, aux_moved = model(moved, with_aux=True)
    assert torch.equal(aux_moved["camera/block_yaw"], aux["camera/block_yaw"])
    # scored against block_yaw, not against block_yaw + tcp as a position would be
    target = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    targets = {"block_yaw": target, "tcp": torch.full((2, 3), 0.3)}
    exact = aux_loss({"camera/block_yaw": target.clone()}, targets)["camera/block_yaw"]
    assert exact.item() == 0.0
    with pytest.raises(ConfigError, match="camera_yaw = 1.0 .* needs? training.encoder_aux"):
        tiny_config("mid", training={"aux_weights": {"block_rel": 1.0}, "camera_yaw": 1.0})
    with pytest.raises(ConfigError, match="camera_yaw must be in"):
        tiny_config("mid", training={"encoder_aux": True, "camera_yaw": -1.0})


def test_camera_far_m_leaves_out_the_samples_near_the_block():
    """camera_far_m: a camera head's error counts only where the gripper is that far (x-y)
    from the named block; the fused heads keep every sample."""
    from mmrobot.train.step import aux_loss

    rel = torch.tensor([[0.2, 0.0, -0.1], [0.01, 0.02, -0.1]])  # 20 cm and 2.2 cm away
    tcp = torch.zeros(2, 3)
    truth = 100.0 * (rel + tcp)
    off = torch.tensor([[1.0, 0.0, 0.0], [5.0, 0.0, 0.0]])  # cm
    pred = {"camera/block_rel": truth + off, "block_rel": 100.0 * rel + off}
    targets = {"block_rel": rel, "tcp": tcp}
    every = aux_loss(pred, targets)
    far = aux_loss(pred, targets, camera_far_m=0.08)
    assert every["camera/block_rel"].item() == pytest.approx((1 + 25) / 6)
    assert far["camera/block_rel"].item() == pytest.approx(1 / 3)  # the far sample alone
    assert far["block_rel"].item() == pytest.approx(every["block_rel"].item())
    # camera_near_weight: the near sample counts, at a fifth of the far one's weight
    weighted = aux_loss(pred, targets, camera_far_m=0.08, camera_near_weight=0.2)
    assert weighted["camera/block_rel"].item() == pytest.approx((1 / 3 + 0.2 * 25 / 3) / 1.2)
    none_far = aux_loss(pred, targets, camera_far_m=0.5)["camera/block_rel"]
    assert none_far.item() == 0.0  # no sample far enough: no camera loss, not NaN


def test_perception_steps_train_only_what_the_camera_heads_read():
    from mmrobot.train.step import training_loss

    training = {
        "aux_weights": {"block_rel": 1.0, "held": 1.0},
        "encoder_aux": True,
        "camera_yaw": 2.0,
    }
    model = FusionPolicyModel(tiny_config("mid", camera={"film": True}, training=training))
    assert set(model.camera_aux_heads) == {"block_rel", "block_yaw"}
    model.train()
    batch = tiny_batch(model.config, 2)
    ac = model.config.action
    targets = torch.randint(0, ac.bins, (2, ac.horizon, ac.dim))
    logits, aux = model(batch, targets, with_aux=True)
    aux_targets = {
        "block_rel": torch.full((2, 3), 0.1),
        "tcp": torch.full((2, 3), 0.3),
        "held": torch.ones(2),
        "block_yaw": torch.tensor([[0.0, 1.0], [1.0, 0.0]]),
    }
    weights = model.config.training.loss_weights
    assert weights == {
        "block_rel": 1.0,
        "held": 1.0,
        "camera/block_rel": 1.0,
        "camera/block_yaw": 2.0,
    }
    total, _, _, losses = training_loss(logits, targets, aux, aux_targets, weights, stage="camera")
    assert total.item() == pytest.approx(
        (losses["camera/block_rel"] + 2.0 * losses["camera/block_yaw"]).item()
    )
    total.backward()
    grads = {
        n: p.grad is not None and bool(p.grad.abs().sum() > 0) for n, p in model.named_parameters()
    }
    trained = {n for n, g in grads.items() if g}
    assert trained and all(
        n.startswith(("image_encoder.", "instruction_encoder.", "camera_aux_heads."))
        for n in trained
    ), sorted(trained)
    assert any(n.startswith("camera_aux_heads.block_rel") for n in trained)
    assert any(n.startswith("camera_aux_heads.block_yaw") for n in trained)
    assert any(n.startswith("image_encoder.") and "film" in n for n in trained)
    # stage "turn" (the trainer's turn_steps): the camera turn head and what it reads, alone
    model.zero_grad()
    logits, aux = model(batch, targets, with_aux=True)
    turn, *_ = training_loss(logits, targets, aux, aux_targets, weights, stage="turn")
    turn.backward()
    trained = {
        n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0
    }
    assert any(n.startswith("camera_aux_heads.block_yaw") for n in trained)
    assert any(n.startswith("image_encoder.") for n in trained)
    assert not any(n.startswith("camera_aux_heads.block_rel") for n in trained)
    with pytest.raises(ValueError, match="stage 'turn_only'"):
        training_loss(logits, targets, aux, aux_targets, weights, stage="turn_only")


@pytest.mark.parametrize("fusion", ["mid", "early", "late"])
def test_gradient_reaches_every_encoder(fusion):
    model = build(fusion).train()
    batch = tiny_batch(model.config, 2)
    ac = model.config.action
    loss, _ = model.loss(batch, torch.randint(0, ac.bins, (2, ac.horizon, ac.dim)))
    loss.backward()
    parts = {
        "image": model.image_encoder,
        "lidar": model.lidar_encoders["lidar"],
        "ft": model.vector_encoders["ft"],
        "joints": model.vector_encoders["joints"],
        "text": model.instruction_encoder,
        "age": model.age_embedding,
    }
    for name, module in parts.items():
        for pname, p in module.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient in {name}.{pname}"
    assert (model.stream_embedding.grad.abs().sum(1) > 0).all()


def test_eval_is_deterministic_and_train_mode_is_not():
    model = build(dropout=0.3)
    batch = tiny_batch(model.config, 2)
    assert torch.equal(model(batch), model(batch))
    model.train()
    assert not torch.equal(model(batch), model(batch))


def test_modality_dropout_masks_streams_in_training_only():
    cfg = tiny_config()
    cfg = cfg.replace(training=type(cfg.training)(modality_dropout={"camera": 1.0}))
    torch.manual_seed(0)
    model = FusionPolicyModel(cfg).train()
    batch = tiny_batch(cfg, 2)
    ref = model(batch)
    with torch.no_grad():
        model.stream_embedding[0] += torch.linspace(-3, 3, model.width)
    torch.testing.assert_close(model(batch), ref, rtol=0, atol=1e-5)  # camera always dropped
    model.eval()
    ev = model(batch)
    with torch.no_grad():
        model.stream_embedding[0] -= torch.linspace(-3, 3, model.width)
    assert (model(batch) - ev).abs().max() > 1e-3  # in eval the camera is seen


@pytest.mark.parametrize("fusion", ["mid", "late"])
def test_kv_cache_decoding_matches_teacher_forced_forward(fusion):
    model = build(fusion, "autoregressive")
    batch = tiny_batch(model.config, 3)
    tokens, logits = model.generate(batch)
    torch.testing.assert_close(model(batch, tokens), logits, rtol=1e-4, atol=1e-4)


def test_autoregressive_forward_needs_targets():
    model = build(decoding="autoregressive")
    with pytest.raises(ValueError, match="teacher forcing"):
        model(tiny_batch(model.config, 1))


def test_camera_size_not_divisible_by_grid_is_a_config_error():
    with pytest.raises(ConfigError, match="not divisible by camera.grid 3"):
        FusionPolicyModel(
            tiny_config().replace(camera=type(tiny_config().camera)(stem_channels=(8,), grid=3))
        )


def _overfit(decoding, batch, targets, steps=400):
    torch.manual_seed(0)
    model = FusionPolicyModel(tiny_config("mid", decoding))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    first = None
    for _ in range(steps):
        loss, acc = model.loss(batch, targets)
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
        if acc > 0.999 and loss < 0.05:
            break
    model.eval()
    return model, first, float(loss.detach())


def test_overfit_parallel_and_autoregressive_agree():
    cfg = tiny_config()
    batch = tiny_batch(cfg, 4, seed=3)
    ac = cfg.action
    targets = torch.randint(
        0, ac.bins, (4, ac.horizon, ac.dim), generator=torch.Generator().manual_seed(5)
    )
    decoded = {}
    for decoding in ("parallel", "autoregressive"):
        model, first, last = _overfit(decoding, batch, targets)
        assert last < 0.25 * first
        with torch.no_grad():
            tokens, _ = model.generate(batch)
        acc = (tokens == targets).float().mean().item()
        assert acc > 0.99, f"{decoding}: token accuracy {acc:.3f}"
        decoded[decoding] = tokens
    assert (decoded["parallel"] == decoded["autoregressive"]).float().mean() > 0.99


def _mapped_model():
    training = {
        "aux_weights": {"block_rel": 1.0, "goal_rel": 1.0},
        "encoder_aux": True,
        "camera_map": 1.0,
        "camera_map_stream": "cam_b",
    }
    return FusionPolicyModel(tiny_config("mid", camera={"film": True}, training=training))


def test_camera_maps_are_the_map_cameras_first_stem_channels_in_training_only():
    torch.manual_seed(0)
    model = _mapped_model().train()
    batch = tiny_batch(model.config, 3)
    batch["cam_b__valid"][1] = False  # the map camera invalid in one row
    _, aux = model(batch, with_aux=True)
    maps = {n: aux[f"camera_map/{n}"] for n in ("block_rel", "goal_rel")}
    fh = model.image_encoder.grid * model.image_encoder.patch[0]  # the last stem layer's size
    assert all(m.shape == (3, fh, fh) for m in maps.values())
    # cam_b's rows of the encoder's maps: channel 0 for block_rel, 1 for goal_rel
    text, text_valid = model.instruction_encoder(
        batch["instruction_tokens"], batch["instruction_mask"]
    )
    tv = text_valid.to(text.dtype).unsqueeze(-1)
    pooled = (text * tv).sum(1) / tv.sum(1).clamp(min=1.0)
    images = torch.cat([batch["cam_a"], batch["cam_b"]])  # the model's camera order
    _, direct = model.image_encoder(images, pooled.repeat(2, 1), maps=2)
    torch.testing.assert_close(maps["block_rel"][0], direct[3, 0], rtol=0, atol=1e-5)
    torch.testing.assert_close(maps["goal_rel"][2], direct[5, 1], rtol=0, atol=1e-5)
    # the invalid row is flat: a constant loss and no gradient
    assert bool((maps["block_rel"][1] == 0).all())
    # the map loss trains the stem; in eval mode (act, ONNX) there are no maps
    from mmrobot.train.step import map_loss

    points = torch.tensor([[0.2, 0.3], [0.5, 0.5], [0.8, 0.6]])
    map_loss(maps["block_rel"], points, torch.ones(3, dtype=torch.bool)).backward()
    assert model.image_encoder.stem[0].weight.grad.abs().sum() > 0
    _, aux = model.eval()(batch, with_aux=True)
    assert not [n for n in aux if n.startswith("camera_map/")]
