# Runs inside a fresh VM of the tiny runner. Its output streams back as it is produced.
echo "${GREETING:-hi} from job $CI_JOB_ID on runner $CI_RUNNER"
echo "kernel: $(uname -sr), $(nproc) cpu, $(awk '/MemTotal/ {print $2 " kB"}' /proc/meminfo)"
echo "working directory: $(pwd); artifacts go to $CI_OUTPUT"
for i in 1 2 3; do
  echo "step $i"
  sleep 1
done
echo "done"
