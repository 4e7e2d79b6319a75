"""
The Hugging Face face of model.py, for checkpoints whose options GPT-2 (GPT2LMHeadModel) lacks: export.py copies
this file and model.py into the exported folder, and config.json's auto_map points transformers here, so that
    AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)
builds model.py's GPT and loads the weights. Not imported by the project itself; the model is model.py's.
generate() runs with a cache of its own, model.py's kv_cache: each step encodes only the new token, which gives
the tokens of a full recompute (transformers' Cache classes change between its versions; this does not).
"""

import torch
from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput

from .model import GPT, GPTConfig, rotary_tables


class NanoGPTConfig(PretrainedConfig):
    model_type = 'nanogpt'

    def __init__(self, gpt=None, **kwargs):
        self.gpt = dict(gpt or {})  # model.py's GPTConfig fields
        # tied as model.py ties them (the head is the embedding), and as transformers' loading and saving expect
        kwargs.setdefault('tie_word_embeddings', self.gpt.get('tie_weights', True))
        super().__init__(**kwargs)
        self.max_position_embeddings = self.gpt.get('block_size')


class NanoGPTForCausalLM(PreTrainedModel, GenerationMixin):
    config_class = NanoGPTConfig
    base_model_prefix = 'gpt'
    _tied_weights_keys = {'gpt.lm_head.weight': 'gpt.transformer.wte.weight'}  # with config.tie_word_embeddings
    _no_split_modules = ['Block']

    def __init__(self, config):
        super().__init__(config)
        self.gpt = GPT(GPTConfig(**config.gpt))
        self.cache = None  # (the tokens encoded so far, model.py's kv_cache) of the last generate() step
        self.post_init()

    @classmethod
    def _supports_default_dynamic_cache(cls):
        return False  # the cache is our own (see forward), not one of transformers' Cache classes

    def _init_weights(self, module):
        """What the weights file lacks: the rotary tables (model.py recomputes them rather than saving them)."""
        if hasattr(module, 'rope_cos'):
            cos, sin = rotary_tables(module.block_size, module.n_embd // module.n_head)
            module.rope_cos, module.rope_sin = cos.to(module.c_attn.weight.device), sin.to(module.c_attn.weight.device)

    def get_input_embeddings(self):
        return self.gpt.transformer.wte

    def get_output_embeddings(self):
        return self.gpt.lm_head

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, **kwargs):
        return {'input_ids': input_ids, 'attention_mask': attention_mask, 'generating': True}

    def forward(self, input_ids, attention_mask=None, labels=None, generating=False, **kwargs):
        """Logits at every position (and the mean next-token loss with labels, shifted as transformers does).
        generating (generate() sets it): the logits of the new positions only, from the cache when input_ids
        continues the last call's sequence."""
        if attention_mask is not None and not bool(attention_mask.all()):
            raise ValueError("padded batches are not supported: give sequences of one length, or one at a time")
        ids = input_ids[:, -self.gpt.config.block_size:]
        done = self.cache[0] if generating and self.cache is not None else None
        continued = done is not None and done.size(0) == ids.size(0) and done.size(1) < ids.size(1)
        if continued and ids.size(1) < self.gpt.config.block_size and torch.equal(ids[:, :done.size(1)], done):
            kv_cache = self.cache[1]  # the sequence of the last call, continued: encode only what is new
            logits = self.gpt(ids[:, done.size(1):], kv_cache=kv_cache, pos=done.size(1), all_logits=True)[0]
        else:
            kv_cache = [[None, None] for _ in self.gpt.transformer.h] if generating else None
            logits = self.gpt(ids, kv_cache=kv_cache, all_logits=True)[0]
        self.cache = (ids, kv_cache) if generating else None
        loss = None
        if labels is not None:
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(),
                                                     ignore_index=-100)
        return CausalLMOutput(loss=loss, logits=logits)
