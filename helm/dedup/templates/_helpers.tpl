{{/* Names, labels, the image, and the pieces every dedup container shares. */}}

{{- define "dedup.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "dedup.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Selector labels of one component: dedup.selectorLabels (dict "root" $ "component" "review") */}}
{{- define "dedup.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dedup.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "dedup.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{ include "dedup.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: dedup
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end -}}

{{/* An image reference from {repository, tag, digest}: the digest wins, the tag defaults to appVersion. */}}
{{- define "dedup.imageRef" -}}
{{- $image := .image -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default .root.Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "dedup.image" -}}
{{- include "dedup.imageRef" (dict "root" . "image" .Values.image) -}}
{{- end -}}

{{- define "dedup.gpuImage" -}}
{{- $gpu := .Values.ray.gpuWorkers.image -}}
{{- if $gpu.repository -}}
{{- include "dedup.imageRef" (dict "root" . "image" $gpu) -}}
{{- else -}}
{{- include "dedup.image" . -}}
{{- end -}}
{{- end -}}

{{- define "dedup.serviceAccountName" -}}
{{- $account := index .root.Values.serviceAccounts .component -}}
{{- if $account.create -}}
{{- default (printf "%s-%s" (include "dedup.fullname" .root) .component) $account.name -}}
{{- else -}}
{{- default "default" $account.name -}}
{{- end -}}
{{- end -}}

{{- define "dedup.databaseSecret" -}}
{{- required "database.existingSecret is required: name the Secret that holds the review database's URL (key database.urlKey, default database-url); the chart never creates it" .Values.database.existingSecret -}}
{{- end -}}

{{- define "dedup.configPath" -}}/etc/dedup/settings.yaml{{- end -}}

{{- define "dedup.rayHead" -}}
{{- printf "%s-ray-head-svc.%s.svc" (include "dedup.fullname" .) .Release.Namespace -}}
{{- end -}}

{{- define "dedup.driverHost" -}}
{{- printf "%s-spark-driver.%s.svc" (include "dedup.fullname" .) .Release.Namespace -}}
{{- end -}}

{{/* The settings the chart wires itself, under the user's (which win). */}}
{{- define "dedup.settings" -}}
{{- $spark := .Values.nightly.spark -}}
{{- $conf := dict
  "spark.kubernetes.namespace" .Release.Namespace
  "spark.kubernetes.container.image" (include "dedup.image" .)
  "spark.kubernetes.container.image.pullPolicy" .Values.image.pullPolicy
  "spark.kubernetes.authenticate.driver.serviceAccountName" (include "dedup.serviceAccountName" (dict "root" . "component" "nightly"))
  "spark.kubernetes.authenticate.executor.serviceAccountName" (include "dedup.serviceAccountName" (dict "root" . "component" "nightly"))
  "spark.kubernetes.executor.podNamePrefix" (printf "%s-night" (include "dedup.fullname" .))
  "spark.kubernetes.executor.label.app.kubernetes.io/part-of" "dedup"
  "spark.kubernetes.executor.label.app.kubernetes.io/component" "spark-executor"
  "spark.kubernetes.executor.label.app.kubernetes.io/instance" .Release.Name
  "spark.executor.instances" ($spark.executors | toString)
  "spark.executor.cores" ($spark.executorCores | toString)
  "spark.executor.memory" $spark.executorMemory
  "spark.driver.host" (include "dedup.driverHost" .)
  "spark.driver.bindAddress" "0.0.0.0"
  "spark.driver.port" ($spark.driverPort | toString)
  "spark.driver.blockManager.port" ($spark.blockManagerPort | toString)
  "spark.blockManager.port" ($spark.blockManagerPort | toString)
  "spark.kubernetes.executor.podTemplateFile" "/etc/dedup/executor-pod.yaml"
  "spark.kubernetes.executor.podTemplateContainerName" "executor"
-}}
{{- range $key, $value := $spark.extraConf -}}
{{- $_ := set $conf $key ($value | toString) -}}
{{- end -}}
{{- $derived := dict
  "gallery_cache" (include "dedup.galleryCachePath" .)
  "spark" (dict "master" "k8s://https://kubernetes.default.svc" "extra_conf" $conf)
  "adjudication" (dict "host" "0.0.0.0" "port" .Values.review.port)
-}}
{{- if .Values.ray.enabled -}}
{{- $_ := set $derived "embed" (dict "ray_address" (printf "ray://%s:%d" (include "dedup.rayHead" .) (int .Values.ray.clientPort))) -}}
{{- end -}}
{{- if contains "://" .Values.nightly.intake.root -}}
{{- $_ := set $derived "manifest" (dict "allow_uris" true) -}}
{{- end -}}
{{- if .Values.monitoring.pushgatewayUrl -}}
{{- $_ := set $derived "metrics" (dict "pushgateway" .Values.monitoring.pushgatewayUrl) -}}
{{- end -}}
{{- toYaml (mergeOverwrite $derived (deepCopy .Values.settings)) -}}
{{- end -}}

{{/* Environment of the containers that reach the review database (the service, the night):
the settings file and the database URL; dedup.rayEnv is the Ray nodes' (no database). */}}
{{- define "dedup.env" -}}
- name: DEDUP_CONFIG
  value: {{ include "dedup.configPath" . }}
- name: DEDUP_ADJUDICATION__DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "dedup.databaseSecret" . }}
      key: {{ .Values.database.urlKey }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "dedup.rayEnv" -}}
- name: DEDUP_CONFIG
  value: {{ include "dedup.configPath" . }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "dedup.envFrom" -}}
{{- if .Values.extraEnvFrom -}}
envFrom:
{{- toYaml .Values.extraEnvFrom | nindent 2 }}
{{- else -}}
envFrom: []
{{- end -}}
{{- end -}}

{{/* The pod-level fields every dedup pod shares. */}}
{{- define "dedup.podCommon" -}}
securityContext:
{{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "dedup.containerSecurityContext" -}}
securityContext:
{{- toYaml .Values.containerSecurityContext | nindent 2 }}
{{- end -}}

{{/* Volumes every dedup pod has: the settings (read-only) and /tmp. */}}
{{- define "dedup.volumes" -}}
- name: settings
  configMap:
    name: {{ include "dedup.fullname" . }}-settings
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSize }}
{{- end -}}

{{- define "dedup.volumeMounts" -}}
- name: settings
  mountPath: /etc/dedup
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* fail when a monitoring object is asked for and the cluster lacks its API. */}}
{{- define "dedup.monitoringApi" -}}
{{- $has := .root.Capabilities.APIVersions.Has "monitoring.coreos.com/v1" -}}
{{- if and .enabled (not $has) -}}
{{- fail (printf "monitoring.%s.enabled needs the prometheus-operator API monitoring.coreos.com/v1, which this cluster does not serve; install prometheus-operator (its CRDs) or set monitoring.%s.enabled=false" .key .key) -}}
{{- end -}}
{{- if and .enabled $has -}}true{{- end -}}
{{- end -}}

{{- define "dedup.nightlyMounts" -}}
{{ include "dedup.volumeMounts" . }}
- name: night
  mountPath: /night
- name: gallery-cache
  mountPath: {{ include "dedup.galleryCachePath" . }}
{{- if .Values.nightly.intake.volume }}
- name: intake
  mountPath: {{ .Values.nightly.intake.root }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* A Ray pod: dedup.rayPodSpec (dict "root" $ "group" <values of the group> "image" ref ["galleryCache" {sizeLimit}]) */}}
{{- define "dedup.rayPodSpec" -}}
{{- $root := .root -}}
serviceAccountName: {{ include "dedup.serviceAccountName" (dict "root" $root "component" "ray") }}
automountServiceAccountToken: false
{{ include "dedup.podCommon" $root }}
containers:
  - name: ray
    image: {{ .image }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    env:
      {{- include "dedup.rayEnv" $root | nindent 6 }}
    {{- include "dedup.envFrom" $root | nindent 4 }}
    resources:
      {{- toYaml .group.resources | nindent 6 }}
    {{- include "dedup.containerSecurityContext" $root | nindent 4 }}
    volumeMounts:
      {{- include "dedup.volumeMounts" $root | nindent 6 }}
      # Ray's object store lives in shared memory (/dev/shm is 64 MiB in a container).
      - name: shm
        mountPath: /dev/shm
      {{- if .galleryCache }}
      - name: gallery-cache
        mountPath: {{ include "dedup.galleryCachePath" $root }}
      {{- end }}
volumes:
  {{- include "dedup.volumes" $root | nindent 2 }}
  - name: shm
    emptyDir:
      medium: Memory
  {{- with .galleryCache }}
  - name: gallery-cache
    emptyDir:
      sizeLimit: {{ .sizeLimit }}
  {{- end }}
{{- with .group.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .group.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The Spark executors' pod template: the driver fills in image, resources, env and args. */}}
{{- define "dedup.executorPod" -}}
apiVersion: v1
kind: Pod
spec:
  automountServiceAccountToken: false
  {{- include "dedup.podCommon" . | nindent 2 }}
  containers:
    - name: executor
      command: ["/usr/bin/tini", "--", "/bin/bash", "/etc/dedup/spark-executor.sh"]
      {{- with .Values.extraEnv }}
      env:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- include "dedup.envFrom" . | nindent 6 }}
      {{- include "dedup.containerSecurityContext" . | nindent 6 }}
      volumeMounts:
        {{- include "dedup.volumeMounts" . | nindent 8 }}
        {{- if .Values.nightly.intake.volume }}
        - name: intake
          mountPath: {{ .Values.nightly.intake.root }}
          readOnly: true
        {{- end }}
  volumes:
    {{- include "dedup.volumes" . | nindent 4 }}
    {{- with .Values.nightly.intake.volume }}
    - name: intake
      {{- toYaml . | nindent 6 }}
    {{- end }}
{{- end -}}

{{/* Where the gallery's local copies go in a pod: settings.gallery_cache, a volume of each pod
that opens an s3:// gallery (the night, the review service's erasures, the Ray workers). */}}
{{- define "dedup.galleryCachePath" -}}
{{- .Values.settings.gallery_cache | default "/var/cache/dedup/gallery" -}}
{{- end -}}

{{/*
Egress rules the network policies share, given review.networkPolicy: to PostgreSQL, and to
the cluster's DNS.
*/}}
{{- define "dedup.databaseEgress" -}}
- to:
    - ipBlock:
        cidr: {{ required "review.networkPolicy.postgres.cidr is required with the network policy: the review database's address range (or set review.networkPolicy.enabled=false)" .postgres.cidr }}
  ports:
    - port: {{ .postgres.port }}
      protocol: TCP
{{- end }}

{{- define "dedup.dnsEgress" -}}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ .dns.namespace }}
      podSelector:
        matchLabels:
          {{- toYaml .dns.podLabels | nindent 10 }}
  ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end }}
