#!/bin/bash
# A Spark executor in the dedup image, started by the executor pod template
# (executor-pod.yaml): the image's entrypoint is the dedup CLI, not Spark's launcher, so the
# executor's JVM is started here from what the driver put in the pod's environment.
# SPARK_JAVA_OPT_<n>: the executor's Java options in order (the driver's ports, Java 17's
# module openings, spark.executor.extraJavaOptions). SPARK_HOME: pyspark's folder by default.
set -euo pipefail
spark_home=${SPARK_HOME:-$(/app/.venv/bin/python -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')}
java_opts=()
while IFS= read -r line; do
  java_opts+=("${line#*=}")
done < <(env | grep '^SPARK_JAVA_OPT_' | sort -t_ -k4 -n)
exec java -Xms"$SPARK_EXECUTOR_MEMORY" -Xmx"$SPARK_EXECUTOR_MEMORY" "${java_opts[@]}" \
  -cp "${SPARK_CLASSPATH:+$SPARK_CLASSPATH:}$spark_home/jars/*" \
  org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
  --driver-url "$SPARK_DRIVER_URL" --executor-id "$SPARK_EXECUTOR_ID" \
  --cores "$SPARK_EXECUTOR_CORES" --app-id "$SPARK_APPLICATION_ID" \
  --hostname "$SPARK_EXECUTOR_POD_IP" --resourceProfileId "$SPARK_RESOURCE_PROFILE_ID" \
  --podName "$SPARK_EXECUTOR_POD_NAME"
