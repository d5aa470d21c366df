"""A procedural synthetic person-keypoint dataset in the official COCO format.

The default job of ``examples/train.py`` needs data that is bundled (nothing to download),
fast to make on a CPU, and hard enough that labels are scarce: a model trained on a few
hundred people must stay well below one trained on all of them, so unlabelled images have
room to help. :func:`generate_synthetic_coco` writes such a set once, seeded, into a
cache folder::

    root/
      images/train_000000.jpg ...  images/val_000000.jpg ...
      person_keypoints_train.json  person_keypoints_val.json
      manifest.json                the generation parameters (written last)

How a scene is made (:func:`sample_scene`):

* **People** are articulated 3-D figures from a pose prior: a kinematic tree (pelvis,
  spine, neck, head, two arms, two legs) whose joint angles come from activity templates
  (standing, walking, running, reaching, waving, squatting, kicking, ...) plus noise,
  clipped to joint-angle limits; body proportions, limb thickness, view (people roughly
  face the camera; in the cluttered style one in ten takes any yaw, so turns sideways or
  shows its back; some camera pitch), in-plane rotation (cluttered: sometimes lying or
  upside down), scale and position vary. Figures are projected orthographically and
  painted far to near. How often the harder cases occur is a :class:`SceneStyle`:
  :data:`CLEAN` (the default) or :data:`CLUTTERED` (generator version 2's scenes).
* **Left and right need context**: clothes are symmetric (both arms and legs share
  colour and texture). The cues are global: the face (eyes, nose, mouth) shows only from
  the front, hair covers the back of the head, an optional chest print is on the front of
  the shirt, feet point forward, and parts nearer the camera are slightly brighter.
* **Texture and clutter**: limbs and clothes carry stripes, checks or blotches with
  cylinder shading; backgrounds are textured (blotches, stripes, checks, a floor);
  random shapes and (cluttered) limb-like distractors, jointed capsules dressed like the
  people in the image, fill the background.
* **Occlusion**: the figure's own body and, in the cluttered style, occluders in front
  of people and other people hide joints. COCO's visibility flags follow from a render
  of which layer owns each pixel: ``v=2`` when the joint's pixel shows one of the
  joint's own body parts (and a face point faces the camera), ``v=1`` when it is hidden,
  ``v=0`` (with ``x = y = 0``) when it falls outside the image.

Shapes are signed-distance functions rendered with numpy at one sample per pixel with
analytic anti-aliasing (coverage ``clip(0.5 - distance, 0, 1)``), so points are exact
to a fraction of a pixel with pixel centres on integers. Boxes and areas are amodal:
the tight box and pixel count of the person's whole silhouette inside the image,
occluded parts included.

The modules, from the data set down to the pixels:

* :mod:`~sshpe.synthetic.writer`: :func:`generate_synthetic_coco`, the COCO files and
  the cache folder;
* :mod:`~sshpe.synthetic.processes`: the worker processes (which exit when the generator
  dies) and the owners of temporary folders;
* :mod:`~sshpe.synthetic.sampling`: :func:`sample_scene`, one image's scene;
* :mod:`~sshpe.synthetic.style`: :class:`SceneStyle`, how hard the scenes are;
* :mod:`~sshpe.synthetic.figures`: the people, posed, dressed and painted;
* :mod:`~sshpe.synthetic.scenery`: backdrops, clutter, distractors and occluders;
* :mod:`~sshpe.synthetic.fabrics`: colours and fabrics of clothes and scenery;
* :mod:`~sshpe.synthetic.scene`: :class:`Scene`, :func:`render_scene` and
  :func:`annotate_scene`;
* :mod:`~sshpe.synthetic.textures`: patterns, noise and the head with its face;
* :mod:`~sshpe.synthetic.shapes`: capsules, ellipses and polygons as signed distances.

Example:
    >>> import numpy as np
    >>> scene = sample_scene(np.random.default_rng(0), (96, 128), num_persons=2)
    >>> rendered = render_scene(scene)
    >>> rendered.image.shape, rendered.image.dtype, len(annotate_scene(scene, rendered))
    ((96, 128, 3), dtype('uint8'), 2)
"""

from __future__ import annotations

from .sampling import sample_scene
from .scene import (
    Layer,
    PersonAnnotation,
    Rendered,
    Scene,
    SceneFigure,
    annotate_scene,
    render_scene,
)
from .style import CLEAN, CLUTTERED, STYLES, SceneStyle
from .writer import (
    DEFAULT_IMAGE_SIZE,
    GENERATOR_VERSION,
    SyntheticPaths,
    coco_category,
    generate_synthetic_coco,
)

# The entry point first, then what it takes and returns, then the scene-level API.
__all__ = [  # noqa: RUF022
    "generate_synthetic_coco",
    "SyntheticPaths",
    "coco_category",
    "DEFAULT_IMAGE_SIZE",
    "GENERATOR_VERSION",
    "SceneStyle",
    "CLEAN",
    "CLUTTERED",
    "STYLES",
    "sample_scene",
    "render_scene",
    "annotate_scene",
    "Scene",
    "SceneFigure",
    "Layer",
    "Rendered",
    "PersonAnnotation",
]
