"""What a deployer takes away from a run: the standalone ONNX predictor and the backbone in its own library's format.

`predict_onnx.py` is copied into every ONNX export folder and runs with onnxruntime, numpy and Pillow
(plus `tokenizers` for text) alone; `preprocessing` describes each input step it applies;
`native` saves a run's backbone and head so timm or transformers load them without transferkit.
"""

from pathlib import Path

PREDICT_SCRIPT = Path(__file__).with_name("predict_onnx.py")
