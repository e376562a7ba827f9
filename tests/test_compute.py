"""How batches meet the model: device-side normalisation equals albumentations', precision and
torch.compile options, and horizontal-flip TTA."""
from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
import torch

from workflow.config import TrainParams
from workflow.data.dataset import DeviceNormalize, pixel_transforms
from workflow.models.predict import predict_logits
from workflow.training.runtime import Compute, compile_if, pick_precision


def test_device_normalisation_equals_albumentations():
    normalize = A.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225], max_pixel_value=255.0)
    image = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    expected = normalize(image=image)["image"].transpose(2, 0, 1)
    batch = torch.from_numpy(image).permute(2, 0, 1)[None]
    assert np.allclose(DeviceNormalize(normalize)(batch)[0].numpy(), expected, atol=1e-5)


def test_only_a_final_standard_normalize_moves_to_the_device():
    resize, normalize = A.Resize(4, 4), A.Normalize()
    pixels, moved = pixel_transforms(A.Compose([resize, normalize]), seed=0)
    assert moved is normalize and pixels.transforms == [resize]
    middle = A.Compose([normalize, resize])
    assert pixel_transforms(middle) == (middle, None)  # kept whole, on the host
    other = A.Compose([resize, A.Normalize(normalization="image")])
    assert pixel_transforms(other)[1] is None


def test_precision_auto_is_fp32_on_cpu_and_bf16_autocasts():
    cpu = torch.device("cpu")
    assert pick_precision("auto", cpu) == "fp32" and pick_precision("bf16", cpu) == "bf16"
    layer = torch.nn.Linear(4, 2)
    with Compute(cpu, precision="bf16").autocast():
        assert layer(torch.ones(1, 4)).dtype == torch.bfloat16
    with Compute(cpu, precision="fp32").autocast():
        assert layer(torch.ones(1, 4)).dtype == torch.float32
    with pytest.raises(ValueError, match="precision"):
        TrainParams.model_validate({"lr": 1e-3, "batch_size": 1, "grad_accum_steps": 1, "epochs": 1,
                                    "warmup_ratio": 0.0, "weight_decay": 0.0, "precision": "fp16"})


def test_compile_gives_the_same_outputs():
    torch.manual_seed(0)
    layer = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    assert compile_if(layer, False) is layer
    compiled = compile_if(layer, True)
    x = torch.randn(3, 4)
    assert compiled is not layer and torch.allclose(compiled(x), layer(x), atol=1e-6)


class _Logits(torch.nn.Module):
    """A model whose logits are the left and right column sums: mirroring swaps them."""

    def forward(self, pixel_values):
        left, right = pixel_values[..., 0].sum(dim=(1, 2)), pixel_values[..., -1].sum(dim=(1, 2))
        return type("Out", (), {"logits": torch.stack([left, right], dim=1)})


def test_hflip_tta_averages_each_image_with_its_mirror():
    pixels = torch.zeros(1, 3, 2, 2)
    pixels[..., 0] = 1.0  # bright left column
    loader = [(pixels, None)]
    plain = predict_logits(_Logits(), loader, Compute(torch.device("cpu")))
    tta = predict_logits(_Logits(), loader, Compute(torch.device("cpu")), hflip=True)
    assert plain.tolist() == [[6.0, 0.0]] and tta.tolist() == [[3.0, 3.0]]


def test_bf16_holds_frozen_weights_in_bf16_and_trains_the_rest_in_fp32():
    from workflow.models.methods import prepare
    from workflow.models.zoo import build_random
    from workflow.recipe import Recipe
    from workflow.training.runtime import place

    recipe = Recipe.of("beit-tiny", "lora")
    bf16 = Compute(torch.device("cpu"), precision="bf16")
    model = place(prepare(build_random("beit-tiny", ["a", "b"], seed=0), recipe), bf16)
    frozen = {p.dtype for p in model.parameters() if not p.requires_grad}
    trained = [p for p in model.parameters() if p.requires_grad]
    assert frozen == {torch.bfloat16} and {p.dtype for p in trained} == {torch.float32}
    with bf16.autocast():
        model(pixel_values=torch.randn(2, 3, 32, 32), labels=torch.tensor([0, 1])).loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all() for p in trained)


def test_gradient_checkpointing_is_refused_in_one_line_where_transformers_lacks_it():
    from workflow.core.errors import UserError
    from workflow.models.methods import prepare
    from workflow.models.zoo import build_random
    from workflow.recipe import Recipe
    from workflow.training.runtime import place

    resnet = prepare(build_random("resnet-tiny", ["a", "b"], seed=0), Recipe.of("resnet-tiny", "full"))
    with pytest.raises(UserError, match="^train.gradient_checkpointing: ResNetForImageClassification does not"):
        place(resnet, Compute(torch.device("cpu")), gradient_checkpointing=True)


def test_gradient_checkpointing_gives_the_same_lora_gradients():
    from workflow.models.methods import plain_model, prepare
    from workflow.models.zoo import build_random
    from workflow.recipe import Recipe
    from workflow.training.runtime import place

    images, labels = torch.randn(2, 3, 32, 32), torch.tensor([0, 1])
    gradients = []
    for checkpointing in (False, True):
        model = prepare(build_random("beit-tiny", ["a", "b"], seed=0), Recipe.of("beit-tiny", "lora"))
        model = place(model, Compute(torch.device("cpu")), gradient_checkpointing=checkpointing).train()
        assert plain_model(model).is_activation_checkpointing == checkpointing
        model(pixel_values=images, labels=labels).loss.backward()
        gradients.append({n: p.grad for n, p in model.named_parameters() if p.requires_grad})
    assert gradients[0].keys() == gradients[1].keys() and len(gradients[0]) > 2
    assert all(torch.allclose(gradients[0][n], gradients[1][n], atol=1e-6) for n in gradients[0])
