"""
The multi-process parts of train.py: joining the process group with a clear error instead of a hang,
FSDP2 sharding, sums over processes, gathering a normal full ckpt.pt from any run, and the stop signals
that every process must act on at the same step.
torchrun starts one process per GPU (or per CPU slot) and tells each its RANK, LOCAL_RANK and WORLD_SIZE.
"""

import os
import shlex
import signal
import sys
from datetime import timedelta

import torch
import torch.distributed as dist

from checkpoint import abandon_save
from configurator import fail


def launched_by_torchrun():
    return int(os.environ.get('RANK', -1)) != -1


def resume_command(argv, environ):
    """The command that continues this run as it was launched: torchrun with its process count (its rendezvous
    options left to the user when there are several machines), the arguments shell-quoted, --init_from=resume."""
    args = [a for a in argv[1:] if not a.startswith(('--init_from=', '--overwrite='))] + ['--init_from=resume']
    if int(environ.get('RANK', -1)) == -1:
        return shlex.join(['python', argv[0], *args])
    nodes, per_node = int(environ.get('GROUP_WORLD_SIZE', 1)), environ.get('LOCAL_WORLD_SIZE', '1')
    launch = (f"torchrun --nnodes={nodes} --nproc_per_node={per_node} <your rendezvous options>" if nodes > 1 else
              f"torchrun --standalone --nproc_per_node={per_node}")
    return f"{launch} {shlex.join([argv[0], *args])}"


received = []  # the name of the first stop signal this process received, if any


def catch_stop_signals(verbose, nothing_new=lambda: False):
    """Ctrl-C and SIGTERM (preemption) ask for a clean stop after the current step: stop_requested()
    names the signal, and train.py's loop shares it with every process, so all save and stop at the
    same step. A second Ctrl-C quits at once, removing a save's half-written temporary file. While
    nothing_new() (no step of this run has ended: compiling, the first evaluation), the first one
    stops at once: there is nothing to save, and compiling can take minutes."""
    def request_stop(signum, frame):
        name = signal.Signals(signum).name
        if not received and nothing_new():
            if verbose:
                print(f"{name} received before this run's first step ended: nothing new to save, stopping now "
                      f"(ckpt.pt, if any, is as it was)", flush=True)
            raise SystemExit(128 + signum)
        if received and signum == signal.SIGINT:
            abandon_save()
            print("second Ctrl-C: exiting now, ckpt.pt left as it was", file=sys.stderr, flush=True)
            os._exit(130)
        if received:  # torchrun follows a Ctrl-C with SIGTERM: not a second Ctrl-C
            return
        received.append(name)  # before the line that invites a second Ctrl-C
        if verbose:
            again = " (Ctrl-C again to quit at once)" if signum == signal.SIGINT else ""
            print(f"{name} received: finishing this step, then saving a checkpoint{again}", flush=True)
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)


def stop_requested():
    """The name of the stop signal this process received ('SIGINT', 'SIGTERM'), or None."""
    return received[0] if received else None


def init_distributed(backend, device_type, timeout_seconds):
    """Join the process group (configurator.setup has made this process's GPU the current one); returns
    (rank, local_rank)."""
    rank, local_rank = int(os.environ['RANK']), int(os.environ['LOCAL_RANK'])
    world_size = int(os.environ['WORLD_SIZE'])
    backend = backend or ('nccl' if device_type == 'cuda' else 'gloo')
    try:
        device_id = torch.device('cuda', local_rank) if device_type == 'cuda' else None  # NCCL binds its GPU at once
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_seconds), device_id=device_id)
        dist.barrier()  # returns only once every process has joined
    except Exception as e:  # a node that never started, a wrong address or port, a firewall
        address = f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
        raise SystemExit(f"error: process {rank} of {world_size} could not form the {backend} process group at "
                         f"{address} within {timeout_seconds}s ({type(e).__name__}) -- start torchrun on every node "
                         f"with the same --nnodes, --master_addr and --master_port, and check that the port is "
                         f"reachable")  # each process says its own: not fail, which only the first process prints
    return rank, local_rank


def replicate_model(model, device_type, local_rank):
    """DDP: a full copy of the model in every process, gradients averaged in the backward. CPU processes take no
    device_ids. The only buffers, RoPE's cos and sin tables, never change: DDP syncs them once, at the start, and
    not again at every forward."""
    from torch.nn.parallel import DistributedDataParallel as DDP
    return DDP(model, device_ids=[local_rank] if device_type == 'cuda' else None, forward_sync_buffers=False)


def shard_model(model, compile=False):
    """FSDP2: every block's parameters, gradients and AdamW state are split across the processes and
    gathered only while that block computes. Blocks first, then the root (embeddings, tied head). With
    compile, each block is compiled before it is sharded, as torchtitan does: one small graph per block,
    with FSDP's gathers outside it; the root stays eager."""
    from torch.distributed.fsdp import fully_shard
    # float32 parameters are gathered and computed under the run's autocast, as one process and DDP do: the same
    # numbers. (bf16 gathers, mp_policy=MixedPrecisionPolicy(param_dtype=torch.bfloat16), would halve the traffic
    # but keep the residual stream in bf16: 9x DDP's drift from one process, measured on gloo)
    for block in model.transformer.h:
        if compile:
            block.compile()  # in place: parameter names stay plain
        # the last block's backward comes right after its forward: gathering it again at once would be wasted
        fully_shard(block, reshard_after_forward=block is not model.transformer.h[-1])
    fully_shard(model)


def sum_over_ranks(ddp, total):
    """A float64 tensor summed over all processes, read once as a float (a collective under DDP: every process
    must call it)."""
    if ddp:
        dist.all_reduce(total)
    return total.item()


def gather_objects(ddp, obj):
    """A list with every process's obj, in rank order (a collective: every process must call it)."""
    if not ddp:
        return [obj]
    objects = [None] * dist.get_world_size()
    dist.all_gather_object(objects, obj)
    return objects


def full_state_dicts(model, optimizer, fsdp, master_process=True):
    """Model and optimizer state as one unsharded copy on the CPU, keyed by parameter names, whatever
    the run (single, DDP or FSDP); a collective under FSDP. The optimizer's is what load_optimizer reads.
    Outside FSDP only the master, which writes them, builds them: (None, None) elsewhere."""
    if not fsdp and not master_process:
        return None, None
    if fsdp:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict  # ~3 s with dynamo's
        return get_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    # each process holds everything: the same dicts as get_state_dict's (quick_test compares them), without its imports
    names = {p: name for name, p in model.named_parameters()}  # a tied weight goes by its first name, as there
    order = [names[p] for group in optimizer.param_groups for p in group['params']]
    state = optimizer.state_dict()  # keyed by positions in that order
    on_cpu = lambda d: {k: v.cpu() if torch.is_tensor(v) else v for k, v in d.items()}
    return on_cpu(model.state_dict()), {
        'state': {order[i]: on_cpu(s) for i, s in state['state'].items()},
        'param_groups': [{**group, 'params': [order[i] for i in group['params']]} for group in state['param_groups']]}


def load_optimizer(model, optimizer, state_dict, fsdp):
    """Load a full optimizer state dict, sharding it first under FSDP; None (a nanoGPT checkpoint whose state
    does not fit) leaves the optimizer fresh."""
    if state_dict is None:
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict
    if next(model.parameters()).device.type == 'cpu':
        # on the CPU the optimizer would keep the very tensors mapped from ckpt.pt, the file the next save replaces
        copy = lambda state: {k: v.clone() if torch.is_tensor(v) else v for k, v in state.items()}
        state_dict = {**state_dict, 'state': {name: copy(state) for name, state in state_dict['state'].items()}}
    try:
        set_optimizer_state_dict(model, optimizer, state_dict, options=StateDictOptions(full_state_dict=fsdp))
    except (KeyError, ValueError, RuntimeError) as e:  # e.g. Muon's state for AdamW, or the other way round
        fail(f"error: the checkpoint's optimizer state does not fit this run's optimizer "
             f"({type(e).__name__}) -- resume with the optimizer_name the run was started with")
