"""
Sample from a trained model:
$ python sample.py --out_dir=out-shakespeare-char
$ python sample.py --init_from=path/to/ckpt.pt     # any ckpt.pt (or its folder), the original nanoGPT's too
or from OpenAI's GPT-2:
$ python sample.py --init_from=gpt2-xl --start="What is the answer to life, the universe, and everything?"
Tokens print as they are made when writing to a terminal; a sample ends at max_new_tokens, at a stop
string, or (BPE models) at <|endoftext|>. The speed in tokens/s goes to stderr at the end.
"""

import os
import sys
import time

import torch

from checkpoint import load_model
from configurator import configure, default_device, fail, setup

# -----------------------------------------------------------------------------
init_from = 'resume'  # 'resume' (from out_dir), a ckpt.pt or its folder, 'gpt2'... or a save_pretrained folder
out_dir = 'out'  # ignored if init_from is not 'resume'
start = "\n"  # or "<|endoftext|>" or etc. Can also specify a file, use as: "FILE:prompt.txt"
num_samples = 10  # number of samples to draw
max_new_tokens = 500  # number of tokens generated in each sample
temperature = 0.8  # 1.0 = no change, < 1.0 = less random, > 1.0 = more random, 0 = always the likeliest token
top_k = 200  # retain only the top_k most likely tokens, clamp others to have 0 probability; 0 keeps all
top_p = 1.0  # nucleus sampling: keep the fewest most likely tokens whose probabilities reach top_p; 1.0 keeps all
stop = []  # strings that end a sample (and are not printed): --stop=ROMEO: or --stop="['\n\n', 'THE END']"
stream = sys.stdout.isatty()  # print each token as it is made (then samples come one at a time)
batch_size = 0  # samples generated together in one batch; 0: all num_samples at once, or 1 when streaming
kv_cache = True  # keep the keys and values of earlier positions; False recomputes the whole context every token
seed = 1337  # the samples follow from it
device = default_device()  # 'cpu', 'cuda', 'cuda:1', 'mps'; the best available by default
dtype = 'auto'  # 'float32', 'bfloat16', 'float16'; 'auto': bf16 on CUDA if supported, else fp16; fp32 elsewhere
compile = False  # use PyTorch 2.0 to compile the model to be faster
threads = 0  # CPU threads torch computes with; 0: torch's default (OMP_NUM_THREADS, else one per core)
# -----------------------------------------------------------------------------
configure(globals())  # overrides from the command line or a config file
# -----------------------------------------------------------------------------
if num_samples <= 0 or max_new_tokens < 0 or temperature < 0 or top_k < 0 or batch_size < 0 or not 0 < top_p <= 1:
    fail("error: num_samples must be positive; max_new_tokens, temperature, top_k and batch_size must be >= 0; "
         "top_p must be in (0, 1]")
if any(s == '' for s in stop):
    fail("error: an empty stop string would end every sample at once")
device, device_type, dtype, ctx = setup(device, dtype, seed, generate=True, threads=threads, training=False)

# the prompt, read first: a missing prompt file should not cost a model load
if start.startswith('FILE:'):
    prompt_path = start[5:]
    if not os.path.isfile(prompt_path):
        fail(f"error: prompt file '{prompt_path}' not found (start=FILE:path reads the prompt from path)")
    try:
        with open(prompt_path, 'r', encoding='utf-8') as f:
            start = f.read()
    except UnicodeDecodeError as e:
        fail(f"error: prompt file '{prompt_path}' is not UTF-8 text (byte {e.start}: {e.object[e.start]:#04x}) -- "
             f"save it as UTF-8")
if not start:
    fail("error: the prompt is empty; pass --start=text or --start=FILE:path")

# model, and the tokenizer of the data it was trained on (characters, the dataset's own BPE, or GPT-2's BPE)
model, tokenizer, dataset, _ = load_model(init_from, out_dir)
model.eval()
model.to(device)
if compile:
    model.compile()  # in place, so that generate() calls the compiled forward
if tokenizer.kind == 'char':  # a dataset's meta.pkl, or the char_vocab.json of an exported model
    print(f"Loading meta from {os.path.join('data', dataset, 'meta.pkl') if dataset else init_from}...")
elif tokenizer.kind == 'bpe':  # a dataset's tokenizer.json, or an exported model's
    print(f"Loading the BPE tokenizer.json of {os.path.join('data', dataset) if dataset else init_from}...")
else:
    print("No character vocabulary found, using GPT-2 encodings...")
try:
    start_ids = tokenizer.encode(start, allow_eot=True)
except ValueError as e:
    fail(f"error: the prompt has characters that {dataset or init_from}'s vocabulary lacks: {e}; remove or "
         f"replace them")
if max(start_ids) >= model.config.vocab_size:
    fail(f"error: the prompt encodes to token id {max(start_ids)}, outside the model's vocabulary of "
         f"{model.config.vocab_size}; this model was not trained on GPT-2 tokens")


def sample_batch(n):
    """Generate n samples together; stream the first as it grows. Returns their texts and the token count."""
    x = torch.tensor(start_ids, dtype=torch.long, device=device)[None, ...].repeat(n, 1)
    tokens, texts, done = [[] for _ in range(n)], [''] * n, [False] * n
    hold = max((len(s) for s in stop), default=1) - 1  # streamed text waits until no stop string can start in it
    shown, generated = 0, 0
    if stream:
        print(start, end='', flush=True)
    vocab = min(tokenizer.vocab_size, model.config.vocab_size)  # GPT-2's 50257 of 50304 rows: padding has no text
    for column in model.generate_tokens(x, max_new_tokens, temperature, top_k or None, top_p if top_p < 1 else None,
                                        use_cache=kv_cache, vocab_size=vocab):
        for r, token in enumerate(column[:, 0].tolist()):
            if done[r]:
                continue
            generated += 1
            if token == tokenizer.eot:
                done[r] = True
                continue
            tokens[r].append(token)
            texts[r] = tokenizer.decode(tokens[r])
            cuts = [i for i in (texts[r].find(s) for s in stop) if i >= 0]
            if cuts:
                texts[r], done[r] = texts[r][:min(cuts)], True
        if stream:  # hold back a partial UTF-8 character too
            safe = len(texts[0]) if done[0] else max(shown, len(texts[0].rstrip('\ufffd')) - hold)
            print(texts[0][shown:safe], end='', flush=True)
            shown = safe
        if all(done):
            break
    if stream:
        print(texts[0][shown:])
    return texts, generated


# run generation
batch = batch_size or (1 if stream else num_samples)
total_tokens, t0 = 0, time.perf_counter()
with ctx:
    for first in range(0, num_samples, batch):
        texts, generated = sample_batch(min(batch, num_samples - first))
        total_tokens += generated
        for i, text in enumerate(texts):
            if not (stream and i == 0):
                print(start + text)
            print('---------------', flush=True)
dt = time.perf_counter() - t0
print(f"{total_tokens} tokens in {dt:.2f}s: {total_tokens / dt:.1f} tokens/s "
      f"({'with' if kv_cache else 'without'} KV cache)", file=sys.stderr)
