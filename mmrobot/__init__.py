"""mmrobot: multimodal robot control.

Sensor drivers feed time-synchronized stream buffers, a PaLM-E-style fusion policy turns an
observation and a language instruction into an action chunk, and a control loop executes it,
in MuJoCo simulation or on a real robot through ONNX Runtime.

Importing this package imports numpy only; subpackages import their heavy dependencies
(torch, mujoco, open3d, cv2, onnxruntime) when they are used.
"""

__version__ = "0.2.0"

__all__ = ["__version__"]
