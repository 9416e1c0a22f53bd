"""Type stubs of the private extension (generated with pybind11-stubgen from the built module).

pipeinfer native core (private; use the pipeinfer package)
"""
from __future__ import annotations
import collections.abc
import numpy
import numpy.typing
import typing
__all__: list[str] = ['DraftLink', 'GGUFError', 'GGUFFile', 'InsufficientMemoryError', 'KVCache', 'KVCacheFullError', 'MPITransport', 'ModelError', 'PipeinferError', 'Pipeline', 'ShapeError', 'ThreadPool', 'Transport', 'TransportError', 'UnsupportedError', 'attention', 'attention_fast', 'attention_fast_path', 'attention_fast_paths', 'dequantize', 'flush_log', 'fp16_to_fp32_fast', 'kernel_isa', 'local_group', 'local_kill', 'matmul', 'mpi_abort_world', 'mpi_fault_seen', 'mpi_report_startup_failure', 'quant_types', 'quantize', 'repack', 'round_to_f16', 'serve_mpi_worker', 'set_kernel_isa', 'set_log_callback', 'split_layers_by_bytes', 'stream_read_gbps', 'stream_read_sum', 'vec_dot']
class PipeinferError(Exception):
    pass
class GGUFError(PipeinferError, ValueError):
    pass
class ShapeError(PipeinferError, ValueError):
    pass
class UnsupportedError(PipeinferError, ValueError):
    pass
class ModelError(PipeinferError, ValueError):
    pass
class InsufficientMemoryError(PipeinferError, MemoryError):
    pass
class KVCacheFullError(PipeinferError, RuntimeError):
    pass
class TransportError(PipeinferError, RuntimeError):
    rank: int
class GGUFFile:
    """
    A GGUF file parsed by the strict reader. Malformed files raise GGUFError.
    """
    @staticmethod
    def from_bytes(data: bytes) -> GGUFFile:
        """
        Parses a GGUF image held in a bytes object (kept alive by the result).
        """
    def __init__(self, path: typing.Any) -> None:
        """
        Maps and parses the GGUF file at `path` (str or os.PathLike).
        """
    def __repr__(self) -> str:
        ...
    def check_unchanged(self) -> None:
        """
        Raises GGUFError if the file was replaced, resized or modified since it was parsed.
        """
    def get_bool(self, key: str, default: typing.Any = None) -> typing.Any:
        ...
    def get_f32_array(self, key: str) -> numpy.typing.NDArray[numpy.float32]:
        ...
    def get_float(self, key: str, default: typing.Any = None) -> typing.Any:
        ...
    def get_i32_array(self, key: str) -> numpy.typing.NDArray[numpy.int32]:
        ...
    def get_int(self, key: str, default: typing.Any = None) -> typing.Any:
        ...
    def get_str(self, key: str, default: typing.Any = None) -> typing.Any:
        ...
    def get_str_array(self, key: str) -> list:
        ...
    def metadata(self) -> dict:
        """
        Metadata in file order: str, int, float, bool, numpy arrays (numeric arrays) and list[str].
        """
    def metadata_types(self) -> dict:
        """
        Key -> type spelling: 'u32', 'f32', 'str', 'arr[str,151936]', ...
        """
    def tensor_data(self, name: str) -> numpy.ndarray:
        """
        Read-only zero-copy uint8 view of a tensor's bytes (KeyError if absent).
        """
    def tensors(self) -> list:
        """
        Tensor table in file order: dicts {name, type, type_id, shape (ne0 first), offset (absolute), nbytes}.
        """
    @property
    def alignment(self) -> int:
        ...
    @property
    def data_offset(self) -> int:
        ...
    @property
    def file_size(self) -> int:
        ...
    @property
    def path(self) -> typing.Any:
        ...
    @property
    def version(self) -> int:
        ...
class ThreadPool:
    """
    Persistent worker threads (for tests of the pool itself).
    """
    def __init__(self, n_threads: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def smoke(self, n_calls: typing.SupportsInt | typing.SupportsIndex, throw_ith: typing.SupportsInt | typing.SupportsIndex = -1) -> numpy.typing.NDArray[numpy.int64]:
        """
        Runs n_calls parallel_for calls; returns per-ith run counts (n_threads,) int64. throw_ith
        makes that thread raise on the last call, which must surface here as RuntimeError.
        """
    @property
    def n_threads(self) -> int:
        ...
class KVCache:
    """
    One KV cache's bookkeeping (test hook): a one-layer cache of n_ctx cells with n_embd
    f16 values per token, sequence ids in [0, n_seq_max), sequence groups of seq_group ids.
    """
    block_cells: typing.ClassVar[int] = 32
    def __init__(self, n_ctx: typing.SupportsInt | typing.SupportsIndex, n_seq_max: typing.SupportsInt | typing.SupportsIndex, seq_group: typing.SupportsInt | typing.SupportsIndex = 0, n_embd: typing.SupportsInt | typing.SupportsIndex = 8) -> None:
        ...
    def allocate(self, pos: typing.Annotated[numpy.typing.ArrayLike, numpy.int32], seqs: collections.abc.Sequence[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]]) -> numpy.typing.NDArray[numpy.int32]:
        """
        Cells (int32) for tokens at positions pos, token i in the sequences seqs[i]; KVCacheFullError
        (nothing allocated) when fewer cells are free.
        """
    def block_owners(self) -> numpy.typing.NDArray[numpy.int32]:
        """
        The group owning each block of block_cells cells (int32, -1: no cell of it in use).
        """
    def clear(self) -> None:
        ...
    def positions(self) -> numpy.typing.NDArray[numpy.int32]:
        """
        Position of every cell (int32, -1 where free).
        """
    def seq_cp(self, src: typing.SupportsInt | typing.SupportsIndex, dst: typing.SupportsInt | typing.SupportsIndex, p0: typing.SupportsInt | typing.SupportsIndex, p1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def seq_keep(self, seq: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def seq_n_cells(self, seq: typing.SupportsInt | typing.SupportsIndex) -> int:
        ...
    def seq_rm(self, seq: typing.SupportsInt | typing.SupportsIndex, p0: typing.SupportsInt | typing.SupportsIndex, p1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def visible_cells(self, pos: typing.Annotated[numpy.typing.ArrayLike, numpy.int32], seqs: collections.abc.Sequence[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]]) -> list[numpy.typing.NDArray[numpy.int32]]:
        """
        For each token, the cells it attends to, in position order.
        """
    @property
    def n_free(self) -> int:
        ...
    @property
    def n_used(self) -> int:
        ...
    @property
    def used_end(self) -> int:
        ...
class Transport:
    """
    One rank's endpoint of a local or MPI transport (test hook).
    """
    def recv(self, src: typing.SupportsInt | typing.SupportsIndex, tag: typing.SupportsInt | typing.SupportsIndex, timeout_s: typing.SupportsFloat | typing.SupportsIndex = -1.0) -> tuple:
        ...
    def send(self, dst: typing.SupportsInt | typing.SupportsIndex, tag: typing.SupportsInt | typing.SupportsIndex, data: bytes) -> None:
        ...
    def silent_for(self, peer: typing.SupportsInt | typing.SupportsIndex) -> float:
        ...
    def try_recv(self, src: typing.SupportsInt | typing.SupportsIndex, tag: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
        ...
    @property
    def bytes_sent(self) -> int:
        ...
    @property
    def kind(self) -> str:
        ...
    @property
    def messages_sent(self) -> int:
        ...
    @property
    def rank(self) -> int:
        ...
    @property
    def size(self) -> int:
        ...
class DraftLink:
    """
    A draft rank's end of the draft channel (drafters/server.py serves it).
    """
    @staticmethod
    def mpi(heartbeat_s: typing.SupportsFloat | typing.SupportsIndex = 0.5, dead_after_s: typing.SupportsFloat | typing.SupportsIndex = 10.0) -> DraftLink:
        """
        Joins the MPI world as a draft rank (collective: every rank's first MPI step).
        """
    def error(self, kind: str, text: str) -> None:
        ...
    def ready(self) -> None:
        ...
    def recv(self, timeout_s: typing.SupportsFloat | typing.SupportsIndex) -> typing.Any:
        """
        The head's next message within timeout_s: ('sync', epoch, n_common, tokens, ahead, p_min), ('stop',), or None.
        """
    def send(self, epoch: typing.SupportsInt | typing.SupportsIndex, pos: typing.SupportsInt | typing.SupportsIndex, tokens: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], p: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex]) -> None:
        ...
    @property
    def rank(self) -> int:
        ...
    @property
    def transport(self) -> str:
        ...
class Pipeline:
    def __init__(self, path: str, n_ctx: typing.SupportsInt | typing.SupportsIndex = 0, n_threads: typing.SupportsInt | typing.SupportsIndex = 1, n_seq_max: typing.SupportsInt | typing.SupportsIndex = 1, n_stages: typing.SupportsInt | typing.SupportsIndex = 1, stage_layers: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex] = [], transport: str = 'local', act_f16: bool = False, heartbeat_s: typing.SupportsFloat | typing.SupportsIndex = 0.5, dead_after_s: typing.SupportsFloat | typing.SupportsIndex = 10.0, max_delay_us: typing.SupportsInt | typing.SupportsIndex = 0, delay_seed: typing.SupportsInt | typing.SupportsIndex = 0, n_spec_buffers: typing.SupportsInt | typing.SupportsIndex = 0, n_spec_branches: typing.SupportsInt | typing.SupportsIndex = 1, repack: bool = False, trace: bool = False, repack_cache_dir: str = '', n_slots: typing.SupportsInt | typing.SupportsIndex = 1, draft_ranks: typing.SupportsInt | typing.SupportsIndex = 0, kv_type: str = 'f16') -> None:
        ...
    def cancel(self, run_ids: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]) -> None:
        ...
    def close(self) -> None:
        ...
    def decode(self, tokens: typing.Annotated[numpy.typing.ArrayLike, numpy.int32], pos: typing.Annotated[numpy.typing.ArrayLike, numpy.int32], seq_ids: typing.Any, logits: typing.Annotated[numpy.typing.ArrayLike, numpy.uint8], exact_rows: bool = False) -> numpy.ndarray:
        """
        Evaluates a batch synchronously; returns a float32 view (n_outputs, n_vocab) overwritten by the next call.
        """
    def draft_poll(self) -> list:
        """
        Proposals arrived from the draft rank: [(epoch, pos, tokens, p)], oldest first.
        """
    def kv_clear(self) -> None:
        ...
    def kv_seq_cp(self, src: typing.SupportsInt | typing.SupportsIndex, dst: typing.SupportsInt | typing.SupportsIndex, p0: typing.SupportsInt | typing.SupportsIndex, p1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def kv_seq_keep(self, seq: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def kv_seq_pos_max(self, seq: typing.SupportsInt | typing.SupportsIndex) -> int:
        ...
    def kv_seq_rm(self, seq: typing.SupportsInt | typing.SupportsIndex, p0: typing.SupportsInt | typing.SupportsIndex, p1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def local_draft_link(self) -> DraftLink:
        """
        The draft rank's link of a local pipeline (served by a thread of this process).
        """
    def poll(self) -> bool:
        """
        True if the oldest run's result has arrived.
        """
    def spec_acquire(self) -> int:
        """
        A free speculative buffer, or -1 if all are in flight.
        """
    def spec_commit(self, seq: typing.SupportsInt | typing.SupportsIndex, p0: typing.SupportsInt | typing.SupportsIndex, p1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def spec_release(self, buffer: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def spec_seq(self, buffer: typing.SupportsInt | typing.SupportsIndex, branch: typing.SupportsInt | typing.SupportsIndex = 0) -> int:
        ...
    def stats(self) -> list:
        """
        Counters of every stage (a list of dicts, stage order).
        """
    def submit(self, tokens: typing.Annotated[numpy.typing.ArrayLike, numpy.int32], pos: typing.Annotated[numpy.typing.ArrayLike, numpy.int32], seq_ids: typing.Any, logits: typing.Annotated[numpy.typing.ArrayLike, numpy.uint8], exact_rows: bool = False, argmax_only: bool = False) -> int:
        """
        Launches a run (computes stage 0 here); returns its run id.
        """
    def sync_drafter(self, epoch: typing.SupportsInt | typing.SupportsIndex, n_common: typing.SupportsInt | typing.SupportsIndex, tokens: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], ahead: typing.SupportsInt | typing.SupportsIndex, p_min: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> None:
        """
        Tells the draft rank the accepted context (its first n_common tokens + tokens) and how far to draft.
        """
    def wait(self) -> tuple:
        """
        The oldest run's result: (run_id, skipped, rows): rows is a float32 logits view (n_rows, n_vocab)
        valid until the next wait, or int32 token ids (n_rows,) for a run submitted with argmax_only.
        """
    def wait_ready(self, timeout_s: typing.SupportsFloat | typing.SupportsIndex) -> bool:
        """
        Waits up to timeout_s for the oldest run's result; True if it has arrived.
        """
    def wait_result_or_draft(self, timeout_s: typing.SupportsFloat | typing.SupportsIndex) -> int:
        """
        Waits until a result (1) or a proposal (2) is ready, or timeout_s passed (0).
        """
    @property
    def arch(self) -> str:
        ...
    @property
    def kv_bytes(self) -> int:
        """
        K/V storage bytes of stage 0's cache (with one stage: the whole cache).
        """
    @property
    def kv_n_free(self) -> int:
        ...
    @property
    def kv_n_used(self) -> int:
        ...
    @property
    def kv_type(self) -> str:
        ...
    @property
    def n_ctx(self) -> int:
        ...
    @property
    def n_ctx_train(self) -> int:
        ...
    @property
    def n_draft_ranks(self) -> int:
        ...
    @property
    def n_embd(self) -> int:
        ...
    @property
    def n_head(self) -> int:
        ...
    @property
    def n_head_kv(self) -> int:
        ...
    @property
    def n_in_flight(self) -> int:
        ...
    @property
    def n_layer(self) -> int:
        ...
    @property
    def n_seq_max(self) -> int:
        ...
    @property
    def n_slots(self) -> int:
        ...
    @property
    def n_stages(self) -> int:
        ...
    @property
    def n_vocab(self) -> int:
        ...
    @property
    def seqs_per_slot(self) -> int:
        """
        sequence ids per slot: slot k owns [k * seqs_per_slot, (k + 1) * seqs_per_slot), the first one canonical
        """
    @property
    def spec_free(self) -> int:
        ...
    @property
    def stage_layers(self) -> list[int]:
        ...
    @property
    def transport(self) -> str:
        ...
def MPITransport(heartbeat_s: typing.SupportsFloat | typing.SupportsIndex = 0.5, dead_after_s: typing.SupportsFloat | typing.SupportsIndex = 10.0) -> Transport:
    """
    This process's MPI endpoint (initialises MPI if needed; collective over all ranks).
    """
def attention(q: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], k: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], v: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], cell_pos: typing.Annotated[numpy.typing.ArrayLike, numpy.int32], cells: typing.Annotated[numpy.typing.ArrayLike, numpy.int32], scale: typing.SupportsFloat | typing.SupportsIndex, one_row: bool = False, ref: bool = False, kv_type: str = 'f16') -> numpy.typing.NDArray[numpy.float32]:
    """
    Attention of one query (head_dim,) over cells (visible cells in position order) of k, v
    (n_cells, head_dim) with positions cell_pos, in llama.cpp's f16 arithmetic, k and v stored as
    kv_type ('f16' or 'q8_0'); ref=True runs the scalar reference instead of the tiled kernel (the
    two must agree bit for bit).
    """
def attention_fast(q: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], k: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], v: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], cell_pos: typing.Annotated[numpy.typing.ArrayLike, numpy.int32], cells: typing.Annotated[numpy.typing.ArrayLike, numpy.int32], scale: typing.SupportsFloat | typing.SupportsIndex, path: str = 'auto', kv_type: str = 'f16') -> numpy.typing.NDArray[numpy.float32]:
    """
    Attention of the query heads q (n_q, head_dim) that share one KV head over cells of k, v
    (n_cells, head_dim) with positions cell_pos, by the default mode's kernel (attend_fast); path:
    'auto' (the one in force), 'ref' (the scalar reference), 'avx512' or 'avx2' (ValueError if
    this CPU lacks it). Returns (n_q, head_dim) float32.
    """
def attention_fast_path() -> str:
    """
    The path the default mode's attention kernel takes on this CPU ('avx512', 'avx2' or 'scalar').
    """
def attention_fast_paths() -> list[str]:
    """
    The SIMD paths of the default mode's attention kernel this CPU can run ('avx512', 'avx2').
    """
def dequantize(type: str, data: typing.Any, n: typing.SupportsInt | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.float32]:
    """
    Dequantizes n values of `type` from raw block bytes (bytes or uint8 array) -> float32[n].
    """
def flush_log() -> None:
    """
    Delivers messages logged by engine threads since the last delivery.
    """
def fp16_to_fp32_fast(h: typing.Annotated[numpy.typing.ArrayLike, numpy.uint16]) -> numpy.typing.NDArray[numpy.float32]:
    """
    f16 bit patterns (uint16) widened to float32 by the attention kernel's branch-free conversion.
    """
def kernel_isa() -> str:
    """
    SIMD level of the kernels in force: 'scalar', 'avx2' or 'avx512'.
    """
def local_group(n: typing.SupportsInt | typing.SupportsIndex, max_delay_us: typing.SupportsInt | typing.SupportsIndex = 0, seed: typing.SupportsInt | typing.SupportsIndex = 0, heartbeat_s: typing.SupportsFloat | typing.SupportsIndex = 0.5, dead_after_s: typing.SupportsFloat | typing.SupportsIndex = 10.0) -> list[Transport]:
    """
    Endpoints of ranks 0..n-1 sharing in-process mailboxes.
    """
def local_kill(endpoint: Transport, rank: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    Marks rank `rank` of the endpoint's local group dead (fault injection).
    """
def matmul(type: str, w: typing.Annotated[numpy.typing.ArrayLike, numpy.uint8], n_in: typing.SupportsInt | typing.SupportsIndex, x: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], n_threads: typing.SupportsInt | typing.SupportsIndex = 1, ref: bool = False, exact_rows: bool = False, repacked: typing.Annotated[numpy.typing.ArrayLike, numpy.uint8] | None = None) -> numpy.typing.NDArray[numpy.float32]:
    """
    y = x @ W.T for a weight W of a ggml type given as raw rows (n_out, row_bytes) uint8 and
    x (n_rows, n_in) float32; returns (n_rows, n_out) float32. ref=True uses the double-precision
    reference (dequantized weights, unquantized activations) instead of the kernels in force.
    exact_rows=True makes every output row bit-identical to a one-row call (speculative
    verification); False lets prompt-sized batches take llama.cpp's batched summation orders.
    repacked: repack(type, w, n_in) of the same w; the product then runs over it in the repacked
    summation order (quant/repack.h), every row exact.
    """
def mpi_abort_world(code: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    MPI_Abort on the world communicator.
    """
def mpi_fault_seen() -> bool:
    """
    True if this process saw a dead or silent rank or an MPI error.
    """
def mpi_report_startup_failure(kind: str, text: str, heartbeat_s: typing.SupportsFloat | typing.SupportsIndex = 0.5, dead_after_s: typing.SupportsFloat | typing.SupportsIndex = 10.0) -> bool:
    """
    Reports an error raised on this MPI rank before it joined the pipeline to the other ranks (runtime/startup-failure.h); False if it had joined already or the report failed.
    """
def quant_types() -> list:
    """
    Rows of the type-traits table: list of dicts {name, id, block_size, type_size, vec_dot_type (name or None), can_dequantize, can_quantize, can_dot}.
    """
def quantize(type: str, x: typing.Annotated[numpy.typing.ArrayLike, numpy.float32]) -> numpy.typing.NDArray[numpy.uint8]:
    """
    Quantizes a 1-D float32 array into raw blocks of `type` -> uint8[row bytes].
    """
def repack(type: str, w: typing.Annotated[numpy.typing.ArrayLike, numpy.uint8], n_in: typing.SupportsInt | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.uint8]:
    """
    Row-interleaved copy (1-D uint8) of weight rows w (n_out, row_bytes) of a ggml type with a
    repacked layout (q4_0, q4_1, q5_0, q8_0), for matmul(..., repacked=...).
    """
def round_to_f16(x: typing.Annotated[numpy.typing.ArrayLike, numpy.float32]) -> numpy.typing.NDArray[numpy.float32]:
    """
    Each value of x (float32, flattened) rounded to the nearest f16, as the KV cache stores it.
    """
def serve_mpi_worker(path: str, heartbeat_s: typing.SupportsFloat | typing.SupportsIndex = 0.5, dead_after_s: typing.SupportsFloat | typing.SupportsIndex = 10.0, repack_cache_dir: str = '') -> None:
    """
    Runs this MPI rank as a pipeline worker until the head shuts the pipeline down.
    """
def set_kernel_isa(isa: str) -> str:
    """
    Selects the kernels: 'scalar' (reference) or a SIMD level capped by the CPU; returns the level in force.
    """
def set_log_callback(callback: typing.Any) -> None:
    """
    Sends the engine's messages (progress of long loads, caches not used) to callback(level, text), level
    as in the logging module (10 debug, 20 info, 30 warning); None drops them.
    """
def split_layers_by_bytes(layer_bytes: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], n_stages: typing.SupportsInt | typing.SupportsIndex) -> list[int]:
    ...
def stream_read_gbps(buf: typing.Annotated[numpy.typing.ArrayLike, numpy.uint8], n_threads: typing.SupportsInt | typing.SupportsIndex = 1, repeats: typing.SupportsInt | typing.SupportsIndex = 3) -> float:
    """
    Best-of-`repeats` GB/s (1e9 bytes/s) of a plain streaming read of buf on n_threads threads:
    the memory-bandwidth baseline for matvec benchmarks.
    """
def stream_read_sum(buf: typing.Annotated[numpy.typing.ArrayLike, numpy.uint8], n_threads: typing.SupportsInt | typing.SupportsIndex = 1) -> int:
    """
    The streaming-read kernel itself: wrapping uint64 sum of buf's little-endian 8-byte words plus
    its trailing bytes (for checking the kernel and timing it from Python).
    """
def vec_dot(type: str, w_row: typing.Any, act: typing.Any, n: typing.SupportsInt | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.float32]:
    """
    Dot products of one weight row (n values of `type`, raw bytes) with each row of act (uint8 (n_act, row bytes of the type's vec_dot_type)) -> float32[n_act].
    """
