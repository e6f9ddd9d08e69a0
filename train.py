"""Train the teacher, the plain student, or the distilled student (train.mode: teacher | student | kd).

    python train.py --cfg configs/msvd_qa_teacher.yml
    python train.py --cfg configs/msvd_qa_student.yml                       # kd from results/msvd_qa_teacher/best.pt
    python train.py --cfg configs/msvd_qa_student.yml train.mode=student --exp_name msvd_qa_student
    torchrun --nproc_per_node 4 train.py --cfg configs/msrvtt_qa_teacher.yml dataset.features_in_memory=true
"""
from __future__ import annotations

from utils.openmp_policy import default_openmp_wait_policy
default_openmp_wait_policy()  # before torch loads; see utils/openmp_policy.py

import sys

from training.train_command import build_parser, config_from_args, main, run  # noqa: E402,F401  (the command line)

if __name__ == "__main__":
    sys.exit(main())
