"""FAKE rclpy for tests: the API edgeseg's ROS 2 node uses, with rclpy's failure modes, on an
in-process "middleware" (`FakeGraph`) that carries messages between publishers and subscriptions.

rclpy needs a ROS 2 installation and cannot be installed here. Every behaviour below follows rclpy's
humble branch (github.com/ros2/rclpy, the ROS 2 that JetPack 6 ships; paths under rclpy/rclpy/):

- `rclpy.init()` twice: RuntimeError('Context.init() must only be called once') (context.py
  Context.init). `rclpy.shutdown()` on a context that was never initialised: RuntimeError('Context
  must be initialized before it can be shutdown') (context.py Context.shutdown); after a shutdown the
  default context is a fresh one (utilities.py get_default_context(shutting_down=True)), so init
  works again. `try_shutdown()` never raises (utilities.py / context.py try_shutdown).
- `Node(...)` before init: NotInitializedException('rclpy.init() has not been called') (node.py
  Node.__init__, exceptions.py). Invalid node names: InvalidNodeNameException (validate_node_name.py;
  rules of rmw's validate_node_name: alphanumerics and '_', not starting with a digit).
- `create_publisher` / `create_subscription`: a QoSProfile or an int depth, else TypeError('Expected
  QoSProfile or int, but received ...'); a negative depth ValueError (node.py
  _validate_qos_or_depth_parameter). The message type must carry type support on its metaclass,
  else AttributeError / RuntimeError('The message type provided is not valid ...')
  (type_support.py check_is_valid_msg_type). Invalid topic names: InvalidTopicNameException with the
  messages of rcl's validate_topic_name.c (ros2/rcl, humble). `~/x` expands to /<ns>/<node>/x and
  relative names to /<ns>/x (expand_topic_name.py, rcl's expand_topic_name).
- `QoSProfile()` with neither history nor depth: InvalidQoSProfileException('History and/or depth
  settings are required.') (qos.py QoSProfile.__init__).
- `Publisher.publish(msg)`: anything but an instance of its msg_type (or bytes) raises
  TypeError('Expected {msg_type}, got {type}') (publisher.py Publisher.publish); after the publisher
  or its node was destroyed, InvalidHandle('cannot use Destroyable because destruction was
  requested'), a RuntimeError (src/rclpy/destroyable.cpp, _rclpy_pybind11.cpp).
- Delivery (the DDS side, ROS 2 docs "Quality of Service settings", QoS compatibility table): a
  RELIABLE subscription gets nothing from a BEST_EFFORT publisher; a subscription's queue keeps the
  newest `depth` messages (KEEP_LAST); messages cross as CDR and arrive as new objects with `uint8[]`
  as array.array('B') (rosidl_generator_py). A type mismatch between the two ends delivers nothing.
- `spin_once(node, timeout_sec=...)` runs at most one ready callback on the calling thread
  (__init__.py spin_once, executors.py SingleThreadedExecutor); on a context that was shut down
  it raises ExternalShutdownException (executors.py wait_for_ready_callbacks). `spin(node)` loops
  while the context is ok (__init__.py spin).
- Signals: `init()` installs rclpy's handlers unless `signal_handler_options=SignalHandlerOptions.NO`
  (`ALL` by default for the default context; __init__.py init, signals.py). Its SIGTERM handler
  replaces the process's own and only shuts every context down (signals.py install_signal_handlers:
  `_shutdown_all_contexts`, no exception raised); `shutdown()` puts the previous handler back
  (uninstall_signal_handlers). Python lets only the main thread set a handler, so a shutdown from
  another thread leaves the fake's SIGTERM handler in place (tests/conftest.py puts the previous one
  back after each test). SIGINT's handler is C++ that chains to the previous one
  (KeyboardInterrupt in Python): not modelled, the process's own SIGINT handling is left as it is.
Not modelled: parameters, services, timers, graph queries, a real executor's wait sets.
"""

from __future__ import annotations

import collections
import enum
import re
import signal
import threading
import time
import types
from dataclasses import dataclass, field
from typing import Any

from fake_rclpy.messages import from_wire, to_wire

# --- exceptions (rclpy/exceptions.py, executors.py, qos.py) ----------------------------------------


class NotInitializedException(Exception):
    def __init__(self, *args: object) -> None:
        Exception.__init__(self, "rclpy.init() has not been called", *args)


class NameValidationException(Exception):
    def __init__(self, name_type: str, name: str, error_msg: str, invalid_index: int) -> None:
        Exception.__init__(self, f"Invalid {name_type}: {error_msg}:\n  '{name}'\n   {' ' * invalid_index}^")


class InvalidNodeNameException(NameValidationException):
    def __init__(self, name: str, error_msg: str, invalid_index: int) -> None:
        super().__init__("node name", name, error_msg, invalid_index)


class InvalidTopicNameException(NameValidationException):
    def __init__(self, name: str, error_msg: str, invalid_index: int) -> None:
        super().__init__("topic name", name, error_msg, invalid_index)


class InvalidHandle(RuntimeError):
    pass


class RCLError(RuntimeError):
    pass


class ExternalShutdownException(Exception):
    """Context has been shutdown."""


class InvalidQoSProfileException(Exception):
    def __init__(self, *args: object) -> None:
        Exception.__init__(self, "Invalid QoSProfile", *args)


# --- QoS (rclpy/qos.py) -----------------------------------------------------------------------------


class SignalHandlerOptions(enum.Enum):
    """rclpy.signals.SignalHandlerOptions (values ALL, SIGINT, SIGTERM, NO)."""

    NO = 0
    SIGINT = 1
    SIGTERM = 2
    ALL = 3


class HistoryPolicy(enum.IntEnum):
    SYSTEM_DEFAULT = 0
    KEEP_LAST = 1
    KEEP_ALL = 2


class ReliabilityPolicy(enum.IntEnum):
    SYSTEM_DEFAULT = 0
    RELIABLE = 1
    BEST_EFFORT = 2


class DurabilityPolicy(enum.IntEnum):
    SYSTEM_DEFAULT = 0
    TRANSIENT_LOCAL = 1
    VOLATILE = 2


class QoSProfile:
    def __init__(self, **kwargs: Any) -> None:
        allowed = {"history", "depth", "reliability", "durability"}
        assert set(kwargs) <= allowed, f"Invalid arguments passed to constructor: {kwargs.keys()!r}"
        if "history" not in kwargs:
            if "depth" not in kwargs:
                raise InvalidQoSProfileException("History and/or depth settings are required.")
            kwargs["history"] = HistoryPolicy.KEEP_LAST
        self.history = HistoryPolicy(kwargs["history"])
        if self.history == HistoryPolicy.KEEP_LAST and "depth" not in kwargs:
            raise InvalidQoSProfileException("History set to KEEP_LAST without a depth setting.")
        self.depth = int(kwargs.get("depth", 10))
        self.reliability = ReliabilityPolicy(kwargs.get("reliability", ReliabilityPolicy.RELIABLE))
        self.durability = DurabilityPolicy(kwargs.get("durability", DurabilityPolicy.VOLATILE))


qos_profile_sensor_data = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=5,
    reliability=ReliabilityPolicy.BEST_EFFORT,
    durability=DurabilityPolicy.VOLATILE,
)  # fmt: skip  (rmw qos_profiles.h: best effort, keep last 5)


# --- name rules (rcl validate_topic_name.c, rmw validate_node_name.c) ------------------------------
_TOPIC_CHARS = re.compile(r"[A-Za-z0-9_/~{}]")


def topic_name_error(name: str) -> tuple[str, int] | None:
    if not name:
        return "topic name must not be empty string", 0
    if name[0].isdigit():
        return "topic name token must not start with a number", 0
    if name.endswith("/"):
        return "topic name must not end with a forward slash", len(name) - 1
    for i, ch in enumerate(name):
        if not _TOPIC_CHARS.fullmatch(ch):
            return (
                "topic name must not contain characters other than alphanumerics, '_', '~', '{', or '}'",
                i,
            )
        if ch == "~" and i != 0:
            return "topic name must not have tilde '~' unless it is the first character", i
        if ch == "/" and i + 1 < len(name) and name[i + 1].isdigit():
            return "topic name token must not start with a number", i + 1
    if name.startswith("~") and len(name) > 1 and name[1] != "/":
        return "topic name must not have a tilde '~' that is not followed by a forward slash '/'", 1
    return None


def node_name_error(name: str) -> tuple[str, int] | None:
    if not name:
        return "node name must not be empty", 0
    for i, ch in enumerate(name):
        if not (ch.isascii() and (ch.isalnum() or ch == "_")):
            return "node name must not contain characters other than alphanumerics or '_'", i
    if name[0].isdigit():
        return "node name must not start with a number", 0
    return None


# --- the middleware --------------------------------------------------------------------------------
@dataclass
class Endpoint:
    topic: str
    msgtype: str
    qos: QoSProfile


@dataclass
class FakeGraph:
    """Test-side view of the ROS graph: inject a camera's messages, read what the node published."""

    subscriptions: list[Any] = field(default_factory=list)
    published: dict[str, list[Any]] = field(default_factory=lambda: collections.defaultdict(list))
    publishers: dict[str, Endpoint] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    wake: threading.Condition = field(default_factory=threading.Condition)

    def deliver(self, topic: str, msg: Any, reliability: ReliabilityPolicy, source: Any = None) -> int:
        """Hand `msg` to every matching subscription (as CDR, like DDS); returns how many took it."""
        wire, msgtype = to_wire(msg), msg.__msgtype__
        taken = 0
        with self.lock:
            subs = [s for s in self.subscriptions if s.topic_name == topic and s is not source]
        for sub in subs:
            if sub._msgtype != msgtype:
                continue  # DDS matches on type: nothing arrives
            if (
                sub.qos_profile.reliability == ReliabilityPolicy.RELIABLE
                and reliability == ReliabilityPolicy.BEST_EFFORT
            ):
                continue  # incompatible QoS: a reliable reader never matches a best-effort writer
            sub._enqueue(from_wire(wire, msgtype))
            taken += 1
        with self.wake:
            self.wake.notify_all()
        return taken

    def camera(
        self, topic: str, msg: Any, *, reliability: ReliabilityPolicy = ReliabilityPolicy.BEST_EFFORT
    ) -> int:
        """A camera driver outside the node publishing `msg` (sensor-data QoS by default)."""
        return self.deliver(topic, msg, reliability)


class Context:
    def __init__(self) -> None:
        self.initialized = False
        self.shut = False
        self.args: list[str] | None = None

    def ok(self) -> bool:
        return self.initialized and not self.shut


def build(graph: FakeGraph) -> dict[str, types.ModuleType]:
    """The modules `rclpy`, `rclpy.node`, `rclpy.qos`, `rclpy.exceptions`, `rclpy.executors`."""
    state = {"context": Context()}

    def _ctx() -> Context:
        return state["context"]

    def _shutdown_all_contexts(signum: int, frame: Any) -> None:  # rclpy's SIGTERM handler
        try_shutdown()

    def _uninstall_handlers() -> None:
        previous = state.pop("old_sigterm", None)
        if previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)

    def init(*, args: list[str] | None = None, context: Any = None, domain_id: int | None = None,
             signal_handler_options: Any = None) -> None:  # fmt: skip
        ctx = _ctx()
        if ctx.initialized:
            raise RuntimeError("Context.init() must only be called once")
        ctx.initialized, ctx.args = True, list(args) if args is not None else None
        options = SignalHandlerOptions.ALL if signal_handler_options is None else signal_handler_options
        ctx.signal_handler_options = options
        in_main = threading.current_thread() is threading.main_thread()
        if options in (SignalHandlerOptions.ALL, SignalHandlerOptions.SIGTERM) and in_main:
            state.setdefault("old_sigterm", signal.signal(signal.SIGTERM, _shutdown_all_contexts))

    def shutdown(*, context: Any = None, uninstall_handlers: bool | None = None) -> None:
        ctx = _ctx()
        state["context"] = Context()  # get_default_context(shutting_down=True)
        if not ctx.initialized:
            raise RuntimeError("Context must be initialized before it can be shutdown")
        if ctx.shut:
            raise RCLError("failed to shutdown: rcl_shutdown already called on the given context")
        ctx.shut = True
        _uninstall_handlers()
        with graph.wake:
            graph.wake.notify_all()

    def try_shutdown(*, context: Any = None) -> None:
        ctx = _ctx()
        if ctx.ok():
            ctx.shut = True
        _uninstall_handlers()
        state["context"] = Context()
        with graph.wake:
            graph.wake.notify_all()

    def ok(*, context: Any = None) -> bool:
        return _ctx().ok()

    class Destroyable:
        def __init__(self) -> None:
            self._destroyed = False

        def _enter(self) -> None:
            if self._destroyed:
                raise InvalidHandle("cannot use Destroyable because destruction was requested")

    class Publisher(Destroyable):
        def __init__(self, node: Node, msg_type: type, topic: str, qos: QoSProfile) -> None:
            super().__init__()
            self.msg_type, self.topic, self.qos_profile, self._node = msg_type, topic, qos, node

        @property
        def topic_name(self) -> str:
            self._enter()
            return self.topic

        def publish(self, msg: Any) -> None:
            self._enter()
            if isinstance(msg, self.msg_type):
                graph.published[self.topic].append(from_wire(to_wire(msg), msg.__msgtype__))
                graph.deliver(self.topic, msg, self.qos_profile.reliability)
            elif isinstance(msg, bytes):
                raise NotImplementedError("fake rclpy: raw publishing is not modelled")
            else:
                raise TypeError(f"Expected {self.msg_type}, got {type(msg)}")

        def get_subscription_count(self) -> int:
            self._enter()
            return sum(1 for s in graph.subscriptions if s.topic_name == self.topic)

        def destroy(self) -> None:
            self._destroyed = True

    class Subscription(Destroyable):
        def __init__(self, msg_type: type, topic: str, callback: Any, qos: QoSProfile) -> None:
            super().__init__()
            self.msg_type, self.topic_name, self.callback, self.qos_profile = msg_type, topic, callback, qos
            self._msgtype = msg_type.__msgtype__
            depth = qos.depth if qos.history == HistoryPolicy.KEEP_LAST else None
            self._queue: collections.deque = collections.deque(maxlen=depth or None)
            self._lock = threading.Lock()

        def _enqueue(self, msg: Any) -> None:
            with self._lock:
                self._queue.append(msg)  # KEEP_LAST: the oldest falls out of a full queue

        def _take(self) -> Any:
            with self._lock:
                return self._queue.popleft() if self._queue else None

        def destroy(self) -> None:
            self._destroyed = True
            with graph.lock:
                if self in graph.subscriptions:
                    graph.subscriptions.remove(self)

    class Logger:
        def __init__(self, name: str) -> None:
            self.name, self.lines = name, []

        def _log(self, level: str, message: str) -> bool:
            self.lines.append((level, str(message)))
            return True

        def debug(self, message: str, **kw: Any) -> bool:
            return self._log("DEBUG", message)

        def info(self, message: str, **kw: Any) -> bool:
            return self._log("INFO", message)

        def warning(self, message: str, **kw: Any) -> bool:
            return self._log("WARN", message)

        warn = warning

        def error(self, message: str, **kw: Any) -> bool:
            return self._log("ERROR", message)

    def check_is_valid_msg_type(msg_type: Any) -> None:
        try:
            ts = msg_type.__class__._TYPE_SUPPORT
        except AttributeError as e:
            e.args = (e.args[0] + " This might be a ROS 1 message type but it should be a ROS 2 message type."
                      " Make sure to source your ROS 2 workspace after your ROS 1 workspace.", *e.args[1:])  # fmt: skip
            raise
        assert ts is not None
        try:
            assert None not in (
                msg_type.__class__._CREATE_ROS_MESSAGE,
                msg_type.__class__._CONVERT_FROM_PY,
                msg_type.__class__._CONVERT_TO_PY,
                msg_type.__class__._DESTROY_ROS_MESSAGE,
            )
        except (AssertionError, AttributeError):
            raise RuntimeError(
                f"The message type provided is not valid ({msg_type}), this might be a service or action"
            ) from None

    class Node(Destroyable):
        def __init__(self, node_name: str, *, context: Any = None, cli_args: list[str] | None = None,
                     namespace: str | None = None, **kwargs: Any) -> None:  # fmt: skip
            super().__init__()
            self._publishers: list[Publisher] = []
            self._subscriptions: list[Subscription] = []
            if not _ctx().ok():
                raise NotInitializedException("cannot create node")
            error = node_name_error(node_name)
            if error is not None:
                raise InvalidNodeNameException(node_name, *error)
            self._name, self._namespace = node_name, (namespace or "/")
            self._logger = Logger(node_name)
            self.context = _ctx()

        def get_name(self) -> str:
            return self._name

        def get_namespace(self) -> str:
            return self._namespace

        def get_logger(self) -> Logger:
            return self._logger

        def resolve_topic_name(self, topic: str) -> str:
            error = topic_name_error(topic)
            if error is not None:
                raise InvalidTopicNameException(topic, *error)
            ns = self._namespace.rstrip("/")
            if topic.startswith("~"):
                return f"{ns}/{self._name}{topic[1:]}"
            return topic if topic.startswith("/") else f"{ns}/{topic}"

        @staticmethod
        def _validate_qos_or_depth_parameter(qos_or_depth: Any) -> QoSProfile:
            if isinstance(qos_or_depth, QoSProfile):
                return qos_or_depth
            if isinstance(qos_or_depth, int):
                if qos_or_depth < 0:
                    raise ValueError("history depth must be greater than or equal to zero")
                return QoSProfile(depth=qos_or_depth)
            raise TypeError(f"Expected QoSProfile or int, but received {type(qos_or_depth)!r}")

        def _endpoint(self, msg_type: Any, topic: str, qos_profile: Any) -> tuple[QoSProfile, str]:
            """The checks create_publisher and create_subscription share, in rclpy's order."""
            self._enter()
            qos = self._validate_qos_or_depth_parameter(qos_profile)
            final = self.resolve_topic_name(topic)
            check_is_valid_msg_type(msg_type)
            return qos, final

        def create_publisher(self, msg_type: Any, topic: str, qos_profile: Any, *, callback_group: Any = None,
                             event_callbacks: Any = None, qos_overriding_options: Any = None,
                             publisher_class: Any = None) -> Publisher:  # fmt: skip
            qos, final = self._endpoint(msg_type, topic, qos_profile)
            publisher = Publisher(self, msg_type, final, qos)
            self._publishers.append(publisher)
            return publisher

        def create_subscription(self, msg_type: Any, topic: str, callback: Any, qos_profile: Any, *,
                                callback_group: Any = None, event_callbacks: Any = None,
                                qos_overriding_options: Any = None, raw: bool = False) -> Subscription:  # fmt: skip
            qos, final = self._endpoint(msg_type, topic, qos_profile)
            sub = Subscription(msg_type, final, callback, qos)
            self._subscriptions.append(sub)
            with graph.lock:
                graph.subscriptions.append(sub)
            return sub

        def destroy_node(self) -> None:
            for p in self._publishers:
                p.destroy()
            for s in self._subscriptions:
                s.destroy()
            self._publishers, self._subscriptions = [], []
            self._destroyed = True

    def spin_once(node: Node, *, executor: Any = None, timeout_sec: float | None = None) -> None:
        deadline = None if timeout_sec is None or timeout_sec < 0 else time.monotonic() + timeout_sec
        while True:
            if not _ctx().ok():
                raise ExternalShutdownException()
            for sub in list(node._subscriptions):
                msg = sub._take()
                if msg is not None:
                    sub.callback(msg)  # on the caller's thread, like the SingleThreadedExecutor
                    return
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            with graph.wake:
                graph.wake.wait(0.02 if remaining is None else min(0.02, remaining))

    def spin(node: Node, executor: Any = None) -> None:
        while _ctx().ok():
            try:
                spin_once(node, timeout_sec=0.05)
            except ExternalShutdownException:
                return

    def create_node(node_name: str, **kwargs: Any) -> Node:
        return Node(node_name, **kwargs)

    rclpy = types.ModuleType("rclpy")
    rclpy.__path__ = []
    for fn in (init, shutdown, try_shutdown, ok, spin_once, spin, create_node):
        setattr(rclpy, fn.__name__, fn)
    node_mod = types.ModuleType("rclpy.node")
    node_mod.Node = Node
    qos_mod = types.ModuleType("rclpy.qos")
    for obj in (QoSProfile, HistoryPolicy, ReliabilityPolicy, DurabilityPolicy, InvalidQoSProfileException):
        setattr(qos_mod, obj.__name__, obj)
    qos_mod.qos_profile_sensor_data = qos_profile_sensor_data
    exc_mod = types.ModuleType("rclpy.exceptions")
    for obj in (NotInitializedException, NameValidationException, InvalidNodeNameException,
                InvalidTopicNameException, InvalidHandle):  # fmt: skip
        setattr(exc_mod, obj.__name__, obj)
    executors = types.ModuleType("rclpy.executors")
    executors.ExternalShutdownException = ExternalShutdownException
    signals = types.ModuleType("rclpy.signals")
    signals.SignalHandlerOptions = SignalHandlerOptions
    rclpy.node, rclpy.qos, rclpy.exceptions, rclpy.executors = node_mod, qos_mod, exc_mod, executors
    rclpy.signals = signals
    rclpy._state = state  # for tests: the current default context
    return {"rclpy": rclpy, "rclpy.node": node_mod, "rclpy.qos": qos_mod, "rclpy.exceptions": exc_mod,
            "rclpy.executors": executors, "rclpy.signals": signals}  # fmt: skip
