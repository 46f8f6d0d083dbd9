"""The built-in synthetic fine-grained dataset (`mmfc synth`), written in the NTU RGB+D raw layout.

body: a 25-joint NTU-layout body with per-performer proportions; actions: the 12 classes;
camera: viewpoints and the Kinect projection; clip: one performance as the sensor reports it;
render: the video frames; writer: the file formats and `generate`.
"""

from mmfc.data.synth.actions import ACTIONS
from mmfc.data.synth.writer import generate

__all__ = ["ACTIONS", "generate"]
