from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Encoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JSON: _ClassVar[Encoding]
    MSGPACK: _ClassVar[Encoding]
JSON: Encoding
MSGPACK: Encoding

class Value(_message.Message):
    __slots__ = ("json", "msgpack")
    JSON_FIELD_NUMBER: _ClassVar[int]
    MSGPACK_FIELD_NUMBER: _ClassVar[int]
    json: str
    msgpack: bytes
    def __init__(self, json: _Optional[str] = ..., msgpack: _Optional[bytes] = ...) -> None: ...

class AddTaskRequest(_message.Message):
    __slots__ = ("name", "args", "kwargs", "priority", "countdown", "eta", "unique", "wait", "encoding")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    KWARGS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    COUNTDOWN_FIELD_NUMBER: _ClassVar[int]
    ETA_FIELD_NUMBER: _ClassVar[int]
    UNIQUE_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    name: str
    args: Value
    kwargs: Value
    priority: int
    countdown: float
    eta: float
    unique: str
    wait: float
    encoding: Encoding
    def __init__(self, name: _Optional[str] = ..., args: _Optional[_Union[Value, _Mapping]] = ..., kwargs: _Optional[_Union[Value, _Mapping]] = ..., priority: _Optional[int] = ..., countdown: _Optional[float] = ..., eta: _Optional[float] = ..., unique: _Optional[str] = ..., wait: _Optional[float] = ..., encoding: _Optional[_Union[Encoding, str]] = ...) -> None: ...

class AddTasksRequest(_message.Message):
    __slots__ = ("calls", "encoding")
    CALLS_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    calls: _containers.RepeatedCompositeFieldContainer[AddTaskRequest]
    encoding: Encoding
    def __init__(self, calls: _Optional[_Iterable[_Union[AddTaskRequest, _Mapping]]] = ..., encoding: _Optional[_Union[Encoding, str]] = ...) -> None: ...

class AddTasksReply(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    def __init__(self, tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ...) -> None: ...

class GetTaskRequest(_message.Message):
    __slots__ = ("uuid", "wait", "include_logs", "encoding")
    UUID_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_LOGS_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    wait: float
    include_logs: bool
    encoding: Encoding
    def __init__(self, uuid: _Optional[str] = ..., wait: _Optional[float] = ..., include_logs: _Optional[bool] = ..., encoding: _Optional[_Union[Encoding, str]] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("uuid", "task_name", "status", "priority", "queue", "args", "kwargs", "result", "traceback", "created_at", "updated_at", "retry", "retry_parent_uuid", "retry_child_uuid", "restart_of", "worker_id", "deliveries", "extra")
    UUID_FIELD_NUMBER: _ClassVar[int]
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    KWARGS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    TRACEBACK_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    RETRY_PARENT_UUID_FIELD_NUMBER: _ClassVar[int]
    RETRY_CHILD_UUID_FIELD_NUMBER: _ClassVar[int]
    RESTART_OF_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    task_name: str
    status: str
    priority: int
    queue: str
    args: Value
    kwargs: Value
    result: Value
    traceback: str
    created_at: float
    updated_at: float
    retry: int
    retry_parent_uuid: str
    retry_child_uuid: str
    restart_of: str
    worker_id: str
    deliveries: int
    extra: Value
    def __init__(self, uuid: _Optional[str] = ..., task_name: _Optional[str] = ..., status: _Optional[str] = ..., priority: _Optional[int] = ..., queue: _Optional[str] = ..., args: _Optional[_Union[Value, _Mapping]] = ..., kwargs: _Optional[_Union[Value, _Mapping]] = ..., result: _Optional[_Union[Value, _Mapping]] = ..., traceback: _Optional[str] = ..., created_at: _Optional[float] = ..., updated_at: _Optional[float] = ..., retry: _Optional[int] = ..., retry_parent_uuid: _Optional[str] = ..., retry_child_uuid: _Optional[str] = ..., restart_of: _Optional[str] = ..., worker_id: _Optional[str] = ..., deliveries: _Optional[int] = ..., extra: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...

class TaskReply(_message.Message):
    __slots__ = ("task", "started_at", "finished_at", "retry_chain", "restarts", "logs")
    TASK_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    RETRY_CHAIN_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    task: Task
    started_at: float
    finished_at: float
    retry_chain: _containers.RepeatedScalarFieldContainer[str]
    restarts: _containers.RepeatedScalarFieldContainer[str]
    logs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ..., started_at: _Optional[float] = ..., finished_at: _Optional[float] = ..., retry_chain: _Optional[_Iterable[str]] = ..., restarts: _Optional[_Iterable[str]] = ..., logs: _Optional[_Iterable[str]] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ("task_name", "status", "queue", "worker_id", "error_contains", "created_after", "created_before", "finished_after", "finished_before", "limit", "cursor")
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_CONTAINS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AFTER_FIELD_NUMBER: _ClassVar[int]
    CREATED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AFTER_FIELD_NUMBER: _ClassVar[int]
    FINISHED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    task_name: str
    status: str
    queue: str
    worker_id: str
    error_contains: str
    created_after: float
    created_before: float
    finished_after: float
    finished_before: float
    limit: int
    cursor: str
    def __init__(self, task_name: _Optional[str] = ..., status: _Optional[str] = ..., queue: _Optional[str] = ..., worker_id: _Optional[str] = ..., error_contains: _Optional[str] = ..., created_after: _Optional[float] = ..., created_before: _Optional[float] = ..., finished_after: _Optional[float] = ..., finished_before: _Optional[float] = ..., limit: _Optional[int] = ..., cursor: _Optional[str] = ...) -> None: ...

class TaskSummary(_message.Message):
    __slots__ = ("uuid", "task_name", "queue", "status", "priority", "created_at", "started_at", "finished_at", "worker_id", "error", "deliveries", "retry_parent_uuid", "retry_child_uuid", "restart_of")
    UUID_FIELD_NUMBER: _ClassVar[int]
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    RETRY_PARENT_UUID_FIELD_NUMBER: _ClassVar[int]
    RETRY_CHILD_UUID_FIELD_NUMBER: _ClassVar[int]
    RESTART_OF_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    task_name: str
    queue: str
    status: str
    priority: int
    created_at: float
    started_at: float
    finished_at: float
    worker_id: str
    error: str
    deliveries: int
    retry_parent_uuid: str
    retry_child_uuid: str
    restart_of: str
    def __init__(self, uuid: _Optional[str] = ..., task_name: _Optional[str] = ..., queue: _Optional[str] = ..., status: _Optional[str] = ..., priority: _Optional[int] = ..., created_at: _Optional[float] = ..., started_at: _Optional[float] = ..., finished_at: _Optional[float] = ..., worker_id: _Optional[str] = ..., error: _Optional[str] = ..., deliveries: _Optional[int] = ..., retry_parent_uuid: _Optional[str] = ..., retry_child_uuid: _Optional[str] = ..., restart_of: _Optional[str] = ...) -> None: ...

class ListTasksReply(_message.Message):
    __slots__ = ("tasks", "cursor", "partial", "searched", "total")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    SEARCHED_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[TaskSummary]
    cursor: str
    partial: bool
    searched: int
    total: int
    def __init__(self, tasks: _Optional[_Iterable[_Union[TaskSummary, _Mapping]]] = ..., cursor: _Optional[str] = ..., partial: _Optional[bool] = ..., searched: _Optional[int] = ..., total: _Optional[int] = ...) -> None: ...

class CancelTaskRequest(_message.Message):
    __slots__ = ("uuid", "reason")
    UUID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    reason: str
    def __init__(self, uuid: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelTaskReply(_message.Message):
    __slots__ = ("uuid", "result")
    UUID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    result: str
    def __init__(self, uuid: _Optional[str] = ..., result: _Optional[str] = ...) -> None: ...

class RestartTaskRequest(_message.Message):
    __slots__ = ("uuid", "encoding")
    UUID_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    encoding: Encoding
    def __init__(self, uuid: _Optional[str] = ..., encoding: _Optional[_Union[Encoding, str]] = ...) -> None: ...

class GetLogsRequest(_message.Message):
    __slots__ = ("uuid",)
    UUID_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    def __init__(self, uuid: _Optional[str] = ...) -> None: ...

class GetLogsReply(_message.Message):
    __slots__ = ("lines",)
    LINES_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, lines: _Optional[_Iterable[str]] = ...) -> None: ...

class WatchTasksRequest(_message.Message):
    __slots__ = ("uuids", "task_names", "statuses", "queue", "after", "from_oldest", "until_idle")
    UUIDS_FIELD_NUMBER: _ClassVar[int]
    TASK_NAMES_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    FROM_OLDEST_FIELD_NUMBER: _ClassVar[int]
    UNTIL_IDLE_FIELD_NUMBER: _ClassVar[int]
    uuids: _containers.RepeatedScalarFieldContainer[str]
    task_names: _containers.RepeatedScalarFieldContainer[str]
    statuses: _containers.RepeatedScalarFieldContainer[str]
    queue: str
    after: str
    from_oldest: bool
    until_idle: bool
    def __init__(self, uuids: _Optional[_Iterable[str]] = ..., task_names: _Optional[_Iterable[str]] = ..., statuses: _Optional[_Iterable[str]] = ..., queue: _Optional[str] = ..., after: _Optional[str] = ..., from_oldest: _Optional[bool] = ..., until_idle: _Optional[bool] = ...) -> None: ...

class TaskEvent(_message.Message):
    __slots__ = ("id", "uuid", "task_name", "queue", "status", "at", "worker_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    uuid: str
    task_name: str
    queue: str
    status: str
    at: float
    worker_id: str
    def __init__(self, id: _Optional[str] = ..., uuid: _Optional[str] = ..., task_name: _Optional[str] = ..., queue: _Optional[str] = ..., status: _Optional[str] = ..., at: _Optional[float] = ..., worker_id: _Optional[str] = ...) -> None: ...
